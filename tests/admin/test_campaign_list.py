"""The campaign list: badges, progress, colour-coded delivery rate, local schedule, filters, search."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import CampaignFactory

LIST = reverse("admin:campaigns_campaign_changelist")


def row_of(html, name):
    start = html.index(f">{name}<")
    return html[start:html.index("</tr>", start)]


@pytest.mark.django_db
def test_badges_progress_and_rate_colors(staff_client):
    CampaignFactory(name="Great", status="completed", total_recipients=1000, sent_count=990, failed_count=10)
    CampaignFactory(name="Middling", status="in_progress", total_recipients=1000, sent_count=450, failed_count=50)
    CampaignFactory(name="Poor", status="failed", total_recipients=100, sent_count=50, failed_count=50)
    CampaignFactory(name="Fresh", status="draft")
    html = staff_client.get(LIST).content.decode()

    great = row_of(html, "Great")
    assert 'campaign-badge status-completed">Completed<' in great
    assert 'value="100"' in great and "990 / 1000 sent" in great
    assert 'rate-good">99.0%' in great
    middling = row_of(html, "Middling")
    assert 'rate-fair">90.0%' in middling and 'value="50"' in middling
    assert 'rate-poor">50.0%' in row_of(html, "Poor")
    assert "—" in row_of(html, "Fresh")  # nothing attempted: no rate rather than 0 %


@pytest.mark.django_db
def test_list_reads_counters_and_never_counts_delivery_logs(staff_client):
    CampaignFactory.create_batch(5, status="completed", total_recipients=10, sent_count=10)
    with CaptureQueriesContext(connection) as queries:
        assert staff_client.get(LIST).status_code == 200
    assert not [q["sql"] for q in queries if "campaigns_deliverylog" in q["sql"]]


@pytest.mark.django_db
def test_scheduled_time_is_shown_in_the_configured_zone(staff_client, settings):
    settings.TIME_ZONE = "America/New_York"
    CampaignFactory(name="Later", status="scheduled",
                    scheduled_at=dt.datetime(2030, 1, 15, 15, 0, tzinfo=dt.timezone.utc))
    assert "2030-01-15 10:00 EST" in row_of(staff_client.get(LIST).content.decode(), "Later")


@pytest.mark.django_db
def test_filter_by_status_and_search_by_name(staff_client):
    CampaignFactory(name="Spring sale", status="draft")
    CampaignFactory(name="Summer sale", status="completed")
    CampaignFactory(name="Newsletter", status="completed")
    html = staff_client.get(LIST, {"status__exact": "completed"}).content.decode()
    assert "Summer sale" in html and "Newsletter" in html and "Spring sale" not in html
    html = staff_client.get(LIST, {"q": "sale"}).content.decode()
    assert "Summer sale" in html and "Spring sale" in html and "Newsletter" not in html
