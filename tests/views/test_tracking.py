"""Issue 13, item 4 (Django side): click redirects do not load or parse the campaign's HTML on every hit."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns import signed_links
from campaigns.models import Campaign, DeliveryLog
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
