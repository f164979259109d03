"""Issue 13, item 4 (Django side): click redirects do not load or parse the campaign's HTML on every hit."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.message import signed_links
from campaigns.models import Campaign, CampaignLink, DeliveryLog, LinkClick
from tests.support.factories import CampaignFactory, DeliveryLogFactory

HTML = '<html><body><a href="https://shop.acme.test/sale">Sale</a></body></html>'


def path_of(url):
    return "/" + url.split("/", 3)[3]


@pytest.mark.django_db
def test_a_click_redirect_loads_the_campaign_html_once_per_campaign_version(client):
    delivery = DeliveryLogFactory(recipient__campaign=CampaignFactory(html_body=HTML),
                                  status=DeliveryLog.Status.SENT)
    click = path_of(signed_links.click_url(delivery.pk, 0))
    assert client.get(click)["Location"] == "https://shop.acme.test/sale"  # first hit: loads the HTML
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert client.get(click)["Location"] == "https://shop.acme.test/sale"
    assert not [q for q in queries.captured_queries if "html_body" in q["sql"]]

    # A new version of the campaign is read again: the redirect follows the campaign's current HTML.
    campaign = Campaign.objects.get(pk=delivery.campaign_id)
    campaign.html_body = HTML.replace("/sale", "/new-sale")
    campaign.save()
    assert client.get(click)["Location"] == "https://shop.acme.test/new-sale"


@pytest.mark.django_db
def test_the_open_pixel_tells_a_privacy_proxy_from_a_person_and_the_redirect_counts_each_link(client):
    """Issue 16, items 2-3, through the SMTP path's real URLs."""
    html = ('<html><body><a href="https://shop.acme.test/sale">Sale</a> <a href="https://acme.test/blog">Blog</a>'
            '</body></html>')
    delivery = DeliveryLogFactory(recipient__campaign=CampaignFactory(html_body=html), status=DeliveryLog.Status.SENT,
                                  sent_at=timezone.now() - dt.timedelta(hours=1))
    token = signed_links.tracking_token(delivery.pk)
    assert client.get(f"/t/o/{token}/", HTTP_USER_AGENT="Mozilla/5.0").status_code == 200  # Apple MPP prefetch
    campaign = Campaign.objects.get(pk=delivery.campaign_id)
    assert (campaign.opened_count, campaign.machine_opened_count) == (0, 1)

    client.get(f"/t/o/{token}/", HTTP_USER_AGENT="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148")
    for index in (1, 1, 0):
        assert client.get(f"/t/c/{token}/{index}/").status_code == 302
    campaign.refresh_from_db()
    assert (campaign.opened_count, campaign.machine_opened_count, campaign.clicked_count) == (1, 1, 1)
    assert dict(CampaignLink.objects.filter(campaign=campaign).values_list("url", "clickers")) == {
        "https://shop.acme.test/sale": 1, "https://acme.test/blog": 1}
    assert LinkClick.objects.filter(delivery=delivery).count() == 2
