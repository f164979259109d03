"""Delivery logs and recipients from the campaign page: filters, address search, no full count, CSV export."""

import csv
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from campaigns import admin_lists
from tests.admin.conftest import add_logs
from tests.factories import CampaignFactory

LOGS = reverse("admin:campaigns_deliverylog_changelist")
RECIPIENTS = reverse("admin:campaigns_recipient_changelist")


def emails_in(response):
    return sorted(str(log.email) for log in response.context["cl"].result_list)


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
def test_search_by_exact_address_or_prefix(staff_client, campaign):
    add_logs(campaign, ["sent"] * 12)
    assert emails_in(staff_client.get(LOGS, {"q": "R0003@Example.com"})) == ["r0003@example.com"]
    assert emails_in(staff_client.get(LOGS, {"q": "r001"})) == ["r0010@example.com", "r0011@example.com"]
    assert emails_in(staff_client.get(RECIPIENTS, {"q": "r0003@example.com",
                                                   "campaign__id__exact": campaign.pk})) == ["r0003@example.com"]


@pytest.mark.django_db
def test_list_never_counts_the_whole_table(staff_client, campaign, monkeypatch):
    monkeypatch.setattr(admin_lists, "COUNT_CAP", 5)
    add_logs(campaign, ["sent"] * 8)
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(LOGS)
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "campaigns_deliverylog" in q["sql"]]
    assert counts and all("LIMIT 6" in sql for sql in counts)  # bounded by the cap
    assert "about " in response.content.decode()  # beyond the cap the total is an estimate
    assert len(response.context["cl"].result_list) == 8


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
def test_csv_export_is_streamed_and_formula_safe(staff_client, campaign):
    logs = add_logs(campaign, ["failed", "sent"])
    logs[0].last_error = "=HYPERLINK(\"http://evil\")"
    logs[0].save()
    campaign.recipients.filter(email=logs[1].email).update(first_name="@SUM(1+1)", last_name="-2+3")
    add_logs(CampaignFactory(), ["sent"])
    response = staff_client.get(reverse("admin:campaigns_campaign_export", args=[campaign.pk]))
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    assert f"campaign-{campaign.pk}-delivery-logs.csv" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["email"] for r in rows] == [logs[0].email, logs[1].email]
    assert rows[0]["last_error"] == "'=HYPERLINK(\"http://evil\")"
    assert (rows[1]["first_name"], rows[1]["last_name"], rows[1]["status"]) == ("'@SUM(1+1)", "'-2+3", "sent")

