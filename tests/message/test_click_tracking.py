"""Open pixel and click redirects through real HTTP requests: signed tokens, no open redirect."""

import contextlib
import signal

import pytest
from django.core import signing

from campaigns.message import click_tracking, signed_links
from campaigns.models import DeliveryLog
from tests.support.factories import CampaignFactory, DeliveryLogFactory

HTML = (
    '<html><body><p>Hi {{ first_name }}</p>'
    '<a href="https://shop.acme.test/sale?a=1&amp;b=2">Sale</a> '
    "<a class='x' href='http://acme.test/blog'>Blog</a> "
    '<a href="mailto:help@acme.test">Mail us</a> <a href="#top">Top</a> '
    '<a href="https://acme.test/r?e={{ email }}">Yours</a> '
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>'
)


def path_of(url):
    return "/" + url.split("/", 3)[3]


def test_only_absolute_http_links_without_merge_tags_are_tracked():
    assert click_tracking.campaign_links(HTML) == ["https://shop.acme.test/sale?a=1&b=2", "http://acme.test/blog"]
    rewritten, count = click_tracking.tracked_html(HTML)
    assert count == 2
    assert '<a href="{{ _t_click_0 }}">Sale</a>' in rewritten
    assert '<a class=\'x\' href="{{ _t_click_1 }}">Blog</a>' in rewritten
    for kept in ('href="mailto:help@acme.test"', 'href="#top"', 'href="https://acme.test/r?e={{ email }}"',
                 'href="{{ unsubscribe_url }}"'):
        assert kept in rewritten
    assert rewritten.index("{{ _t_open }}") < rewritten.index("</body>")


def test_hrefs_are_read_as_a_browser_reads_a_start_tag():
    html = ('<a title="a>b" href="https://acme.test/1">x</a> <A\nHREF=\'https://acme.test/2\'>y</A> '
            '<a data-href="https://not.test/" href="https://acme.test/3" href="https://not.test/second">z</a> '
            '<abbr href="https://not.test/abbr">q</abbr> <a href=https://not.test/unquoted>u</a>')
    assert click_tracking.campaign_links(html) == ["https://acme.test/1", "https://acme.test/2", "https://acme.test/3"]
    rewritten, count = click_tracking.tracked_html(html)
    assert count == 3 and '<a title="a>b" href="{{ _t_click_0 }}">' in rewritten
    assert 'data-href="https://not.test/" href="{{ _t_click_2 }}" href="https://not.test/second"' in rewritten


@contextlib.contextmanager
def no_longer_than(seconds):
    """Fails the test if the block runs past SECONDS: a generous bound (the scans below take well under a
    second; the quadratic pattern they replace took hours), not a speed assertion (benchmarks/ has that)."""
    def give_up(signum, frame):
        raise AssertionError(f"still scanning after {seconds} s: the scan is not linear")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("pathological", ["<a " * 100_000, "<!-- " + "<a " * 100_000 + "-->", "<a href=\"" * 100_000,
                                          "<a " + "x=" * 100_000, "<a title='" * 100_000])
def test_pathological_html_is_scanned_in_linear_time_and_the_links_after_it_still_count(pathological):
    html = pathological + '> <a href="https://acme.test/after">After</a>'
    with no_longer_than(60):
        assert click_tracking.campaign_links("<a " * 100_000) == []
        links = click_tracking.campaign_links(html)
        rewritten, count = click_tracking.tracked_html(html)
    assert len(links) == count and rewritten.startswith(pathological[:1000])


@pytest.fixture
def delivery(db):
    return DeliveryLogFactory(recipient__campaign=CampaignFactory(html_body=HTML), status=DeliveryLog.Status.SENT)


def test_a_click_redirects_to_the_campaigns_link_and_counts_the_recipient_once(client, delivery):
    response = client.get(path_of(signed_links.click_url(delivery.pk, 0)))
    assert response.status_code == 302 and response["Location"] == "https://shop.acme.test/sale?a=1&b=2"
    client.get(path_of(signed_links.click_url(delivery.pk, 1)))
    client.get(path_of(signed_links.click_url(delivery.pk, 0)))

    delivery.refresh_from_db()
    delivery.campaign.refresh_from_db()
    assert delivery.clicked_at is not None and delivery.campaign.clicked_count == 1


def test_the_click_redirect_refuses_foreign_urls(client, delivery):
    beyond = client.get(path_of(signed_links.click_url(delivery.pk, 2)))  # the campaign has two tracked links
    # A signed token can only name a link index: a URL in the request is never used.
    with_param = client.get(path_of(signed_links.click_url(delivery.pk, 1)) + "?url=https://evil.test/")
    unsigned = client.get(f"/t/c/{delivery.pk}.0/")
    forged = client.get(f"/t/c/{delivery.pk}.0:{'A' * 43}/")
    other_purpose = client.get(f"/t/c/{signing.Signer(salt=signed_links.OPEN_SALT).sign(f'{delivery.pk}.0')}/")
    unsubscribe_token = client.get(f"/t/c/{signed_links.unsubscribe_token(delivery.pk)}/0/")

    assert beyond.status_code == 404
    assert with_param.status_code == 302 and with_param["Location"] == "http://acme.test/blog"
    for response in (unsigned, forged, other_purpose, unsubscribe_token):
        assert response.status_code == 404
    delivery.campaign.refresh_from_db()
    assert delivery.campaign.clicked_count == 1  # only the genuine click


def test_the_open_pixel_is_a_gif_and_counts_the_recipient_once(client, delivery):
    for _ in range(3):
        response = client.get(path_of(signed_links.open_url(delivery.pk)))
        assert response.status_code == 200 and response["Content-Type"] == "image/gif"
        assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]
    delivery.campaign.refresh_from_db()
    assert delivery.campaign.opened_count == 1


def test_a_forged_open_token_changes_nothing(client, delivery):
    assert client.get(f"/t/o/{delivery.pk}:{'A' * 43}/").status_code == 404
    assert client.get(f"/t/o/{signed_links.unsubscribe_token(delivery.pk)}/").status_code == 404
    delivery.refresh_from_db()
    assert delivery.opened_at is None
