"""Change lists that stay fast with millions of rows: index-friendly address search, no full count."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from campaigns.admin import pagination
from tests.admin.conftest import add_logs, emails_in

LOGS = reverse("admin:campaigns_deliverylog_changelist")
RECIPIENTS = reverse("admin:campaigns_recipient_changelist")


@pytest.mark.django_db
def test_search_by_exact_address_or_prefix(staff_client, campaign):
    add_logs(campaign, ["sent"] * 12)
    assert emails_in(staff_client.get(LOGS, {"q": "R0003@Example.com"})) == ["r0003@example.com"]
    assert emails_in(staff_client.get(LOGS, {"q": "r001"})) == ["r0010@example.com", "r0011@example.com"]
    assert emails_in(staff_client.get(RECIPIENTS, {"q": "r0003@example.com",
                                                   "campaign__id__exact": campaign.pk})) == ["r0003@example.com"]


@pytest.mark.django_db
def test_list_never_counts_the_whole_table(staff_client, campaign, monkeypatch):
    monkeypatch.setattr(pagination, "COUNT_CAP", 5)
    add_logs(campaign, ["sent"] * 8)
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(LOGS)
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "campaigns_deliverylog" in q["sql"]]
    assert counts and all("LIMIT 6" in sql for sql in counts)  # bounded by the cap
    assert "about " in response.content.decode()  # beyond the cap the total is an estimate
    assert len(response.context["cl"].result_list) == 8
