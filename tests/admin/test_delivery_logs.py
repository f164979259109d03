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


@pytest.mark.django_db
def test_the_list_shows_attempts_sent_at_and_error_and_the_campaign_only_when_mixed(staff_client, campaign):
    """Issue 25, item 11: filtered to one campaign, its name is said once, above the list, not on every row."""
    add_logs(campaign, ["failed"])
    campaign.delivery_logs.update(attempts=3, last_error="550 5.1.1 <a@example.com>: User unknown")
    filtered = staff_client.get(LOGS, {"campaign__id__exact": campaign.pk})
    assert list(filtered.context["cl"].list_display) == [
        "address", "status", "sent_by", "attempts", "sent_time", "short_error"]
    page = filtered.content.decode()
    assert 'title="550 5.1.1 &lt;a@example.com&gt;: User unknown"' in page  # the whole error on hover
    assert "campaign_name" in staff_client.get(LOGS).context["cl"].list_display

