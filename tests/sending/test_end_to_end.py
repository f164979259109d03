"""Unsubscribe, tracking and SMTP bounces end to end: real worker processes send through the SMTP sink,
and the links in the received messages are followed over HTTP."""

import re

import pytest
from django.test import Client

from campaigns import services
from campaigns.models import Campaign, DeliveryLog, Recipient, Suppression
from tests.sending.test_pipeline import wait_until_finished
from tests.support.factories import CampaignFactory

pytestmark = pytest.mark.slow
SITE = "https://mail.example.test"
HTML = (
    '<html><body><p>Hello {{ first_name|default:"there" }} from {{ city }}.</p>'
    '<p><a href="https://shop.acme.test/sale?x=1&amp;y=2">Sale</a> <a href="https://acme.test/blog">Blog</a></p>'
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
)


@pytest.fixture
def site(settings, worker_env):
    settings.SITE_URL = SITE
    worker_env.update(SITE_URL=SITE, UNSUBSCRIBE_MAILTO="unsubscribe@acme.test")


def campaign_to(addresses, **fields):
    campaign = CampaignFactory(html_body=HTML, **fields)
    Recipient.objects.bulk_create(
        Recipient(campaign=campaign, email=address, first_name=first, data={"city": city})
        for address, first, city in addresses)
    return campaign


def send(campaign):
    services.send_now(campaign.pk)
    return wait_until_finished(campaign)


def received(sink, campaign):
    """The messages the sink received for CAMPAIGN, by recipient address."""
    return {m["X-Sink-Rcpt-To"]: m for m in sink.messages() if m["X-Campaign-ID"] == str(campaign.pk)}


def path_of(url):
    return "/" + url.split("/", 3)[3]


def test_one_click_unsubscribe_from_a_received_message_then_a_later_campaign_skips_the_address(
        start_worker, smtp_sink_server, no_sendgrid, site):
    start_worker(["scheduler", "senders"], concurrency=1)
    hostile = '<script>alert("x")</script>'
    first = send(campaign_to([("Ann.Lee@example.com", "Ann", "Lisbon"), ("bob@example.com", "Bob", "Porto"),
                              ("eve@example.com", hostile, '<img src=x onerror="alert(1)">')]))
    assert first.sent_count == 3
    messages = received(smtp_sink_server, first)

    ann = messages["Ann.Lee@example.com"]
    list_unsubscribe = ann["List-Unsubscribe"].strip()  # a long header is folded onto its next line
    assert re.fullmatch(rf"<{SITE}/u/[^>]+/>, <mailto:unsubscribe@acme\.test\?subject=unsubscribe>",
                        list_unsubscribe)
    assert ann["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # Recipient data is inert in the HTML part.
    eve_html = messages["eve@example.com"].get_body(("html",)).get_content()
    assert "<script>" not in eve_html and "<img src=x" not in eve_html
    assert "Hello &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; from &lt;img src=x" in eve_html

    # The mailbox provider's one-click POST to the header's https link: no cookie, no CSRF token.
    unsubscribe_link = re.match(r"<([^>]+)>", list_unsubscribe).group(1)
    response = Client(enforce_csrf_checks=True).post(
        path_of(unsubscribe_link), data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert Suppression.objects.get().reason == Suppression.Reason.UNSUBSCRIBED

    second = send(campaign_to([("Ann.Lee@example.com", "Ann", "Lisbon"), ("bob@example.com", "Bob", "Porto")]))

    assert set(received(smtp_sink_server, second)) == {"bob@example.com"}
    skipped = DeliveryLog.objects.get(campaign=second, email="Ann.Lee@example.com")
    assert (skipped.status, skipped.last_error) == (DeliveryLog.Status.SKIPPED, "suppressed: unsubscribed")
    assert (second.sent_count, second.skipped_count) == (1, 1)


def test_smtp_tracking_counts_opens_and_clicks_and_redirects_only_to_the_campaigns_links(
        start_worker, smtp_sink_server, no_sendgrid, site, client, settings):
    # The pixel is fetched seconds after sending, which would make it a machine's (tests/engagement/test_opens_and_clicks.py).
    settings.MACHINE_OPEN_SECONDS = 0
    start_worker(["scheduler", "senders"], concurrency=1)
    tracked = send(campaign_to([("ann@example.com", "Ann", "Lisbon"), ("bob@example.com", "Bob", "Porto")]))
    untracked = send(campaign_to([("cid@example.com", "Cid", "Faro")], track_engagement=False))

    ann = received(smtp_sink_server, tracked)["ann@example.com"]
    html = ann.get_body(("html",)).get_content()
    hrefs = re.findall(r'href="([^"]+)"', html)
    pixel = re.search(r'<img src="([^"]+)"', html).group(1)
    assert [h.split("/t/")[0] for h in hrefs[:2]] == [SITE, SITE] and hrefs[2].startswith(f"{SITE}/u/")
    assert pixel.startswith(f"{SITE}/t/o/")
    text = ann.get_body(("plain",)).get_content()
    assert "https://shop.acme.test/sale?x=1&y=2" in text and "/t/c/" not in text  # the text part is untracked

    assert client.get(path_of(pixel)).status_code == 200
    client.get(path_of(pixel))
    click = client.get(path_of(hrefs[0]))
    assert click.status_code == 302 and click["Location"] == "https://shop.acme.test/sale?x=1&y=2"
    assert client.get(path_of(hrefs[1]))["Location"] == "https://acme.test/blog"
    tracked.refresh_from_db()
    assert (tracked.opened_count, tracked.clicked_count) == (1, 1)
    assert DeliveryLog.objects.get(campaign=tracked, email="bob@example.com").opened_at is None

    cid_html = received(smtp_sink_server, untracked)["cid@example.com"].get_body(("html",)).get_content()
    assert 'href="https://shop.acme.test/sale?x=1&amp;y=2"' in cid_html and "/t/" not in cid_html


def test_a_permanent_smtp_rejection_fails_that_recipient_and_suppresses_it_as_bounced(
        start_worker, smtp_sink_server, no_sendgrid):
    smtp_sink_server.set_faults(reject_rcpt="^gone@")
    start_worker(["scheduler", "senders"], concurrency=1)
    first = send(campaign_to([("gone@example.com", "Gone", "X"), ("ann@example.com", "Ann", "Y")]))

    gone = DeliveryLog.objects.get(campaign=first, email="gone@example.com")
    assert gone.status == DeliveryLog.Status.FAILED and "550" in gone.last_error
    assert (first.sent_count, first.failed_count) == (1, 1)
    suppression = Suppression.objects.get()
    assert (suppression.email, suppression.reason, suppression.source, suppression.campaign_id) == (
        "gone@example.com", "bounced", "smtp 5xx at send time", first.pk)

    smtp_sink_server.set_faults()  # the address would be accepted now; it must not be tried at all
    second = send(campaign_to([("gone@example.com", "Gone", "X"), ("ann@example.com", "Ann", "Y")]))
    assert set(received(smtp_sink_server, second)) == {"ann@example.com"}
    assert DeliveryLog.objects.get(campaign=second, email="gone@example.com").last_error == "suppressed: bounced"
    assert Campaign.objects.get(pk=second.pk).status == Campaign.Status.COMPLETED
