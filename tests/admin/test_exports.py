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



@pytest.mark.django_db
def test_the_export_says_which_ab_variant_each_recipient_got(staff_client, campaign):
    from campaigns.models import Campaign, CampaignVariant

    a = CampaignVariant.objects.create(campaign=campaign, letter="A", subject="A")
    b = CampaignVariant.objects.create(campaign=campaign, letter="B", subject="B")
    logs = add_logs(campaign, ["sent", "sent", "sent", "pending", "skipped"])
    logs[0].variant, logs[1].variant = a, b
    logs[0].save(), logs[1].save()
    Campaign.objects.filter(pk=campaign.pk).update(ab_test_percent=40, ab_winner=b)
    response = staff_client.get(reverse("admin:campaigns_campaign_export", args=[campaign.pk]))
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    # The test share's own variant; the winner for the rest that was sent; none for rows not sent.
    assert [(r["status"], r["variant"]) for r in rows] == [
        ("sent", "A"), ("sent", "B"), ("sent", "B"), ("pending", ""), ("skipped", "")]
