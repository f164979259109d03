"""CSV export of a campaign's delivery logs: streamed, and safe to open in a spreadsheet."""

import csv
import io

import pytest
from django.urls import reverse

from tests.admin.conftest import add_logs
from tests.support.factories import CampaignFactory


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

