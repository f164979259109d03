"""Delivery logs and recipients from the campaign page: links, filters, one query per page whatever the rows."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.admin.conftest import add_logs, emails_in
from tests.support.factories import CampaignFactory

LOGS = reverse("admin:campaigns_deliverylog_changelist")
RECIPIENTS = reverse("admin:campaigns_recipient_changelist")


@pytest.mark.django_db
def test_campaign_page_links_to_its_logs_and_recipients(staff_client, campaign):
    page = staff_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert f"{LOGS}?campaign__id__exact={campaign.pk}" in page
    assert f"{RECIPIENTS}?campaign__id__exact={campaign.pk}" in page


@pytest.mark.django_db
def test_filter_by_campaign_status_and_provider(staff_client, campaign):
    other = CampaignFactory()
    add_logs(campaign, ["sent", "sent", "failed"])
    add_logs(campaign, ["sent"], provider="sendgrid")
    add_logs(other, ["sent"])
    response = staff_client.get(LOGS, {"campaign__id__exact": campaign.pk})
    assert len(emails_in(response)) == 4 and 'id="filtered-campaign"' in response.content.decode()
    response = staff_client.get(LOGS, {"campaign__id__exact": campaign.pk, "status__exact": "sent",
                                       "provider__exact": "smtp"})
    assert emails_in(response) == ["r0000@example.com", "r0001@example.com"]
    assert len(emails_in(staff_client.get(LOGS, {"campaign__id__exact": campaign.pk, "status__exact": "failed"}))) == 1


@pytest.mark.django_db
def test_list_avoids_n_plus_one(staff_client, campaign):
    add_logs(campaign, ["sent"] * 3)
    with CaptureQueriesContext(connection) as few:
        staff_client.get(LOGS)
    add_logs(CampaignFactory(), ["sent"] * 20)
    with CaptureQueriesContext(connection) as many:
        staff_client.get(LOGS)
    assert len(many) == len(few)
