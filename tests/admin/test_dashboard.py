"""The campaign dashboard: figures from the counters, the JSON endpoint the page polls, the sends chart."""

import datetime as dt
import uuid

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns import stats
from campaigns.admin import dashboard
from campaigns.engagement import opens_and_clicks
from campaigns.models import Campaign, DeliveryLog, SendBatch
from campaigns.sending import pipeline
from tests.admin.conftest import add_logs
from tests.audience.test_plan import lisbon_campaign
from tests.support.engaged_campaign import IPHONE_MAIL, make_engaged_campaign
from tests.support.factories import CampaignFactory
from tests.support import workers


def json_url(campaign):
    return reverse("admin:campaigns_campaign_dashboard_json", args=[campaign.pk])


@pytest.mark.django_db
def test_dashboard_json_has_progress_rate_times_and_engagement(staff_client):
    started = timezone.now() - dt.timedelta(seconds=100)
    campaign = CampaignFactory(status="completed", total_recipients=100, sent_count=90, failed_count=4,
                               unknown_count=1, skipped_count=5, opened_count=30, started_at=started,
                               completed_at=started + dt.timedelta(seconds=45))
    data = staff_client.get(json_url(campaign)).json()
    assert (data["status"], data["processed"], data["pending"], data["progress_percent"]) == ("completed", 100, 0, 100)
    assert data["delivery_rate"] == 94.7 and data["rate_level"] == "fair"  # 90 / (90 + 4 + 1); skipped excluded
    assert data["duration"] == "0m 45s" and data["emails_per_second"] == 2.0
    assert data["engagement_known"] and data["opened"] == 30
    assert data["chart_svg"].startswith("<svg")


@pytest.mark.django_db
def test_dashboard_shows_the_recipients_being_sent_now_from_the_batches_under_a_claim(staff_client):
    campaign = CampaignFactory(status="in_progress", total_recipients=5)
    logs = add_logs(campaign, ["pending"] * 4 + ["sent"])
    DeliveryLog.objects.filter(pk__in=[log.pk for log in logs[2:]]).update(batch_number=1)
    SendBatch.objects.create(campaign=campaign, number=0, status="done", first_id=logs[0].pk, last_id=logs[1].pk)
    SendBatch.objects.create(campaign=campaign, number=1, status="sending", first_id=logs[2].pk, last_id=logs[4].pk,
                             claim_token=uuid.uuid4(), lease_expires_at=timezone.now())
    data = staff_client.get(json_url(campaign)).json()
    assert (data["sending_batches"], data["sending"]) == (1, 2)  # batch 1's rows without a result
    page = staff_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert 'id="dash-sending">2<' in page


@pytest.mark.django_db
def test_dashboard_is_on_the_campaign_page_and_polls(staff_client):
    campaign = CampaignFactory(status="in_progress", total_recipients=10, sent_count=4)
    page = staff_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert 'id="campaign-dashboard"' in page and f'data-url="{json_url(campaign)}"' in page
    assert 'id="dash-sent">4<' in page and "dashboard.js" in page
    assert "<svg" in page


@pytest.mark.django_db
def test_sends_chart_counts_per_minute(staff_client):
    minute = (timezone.now() - dt.timedelta(minutes=10)).replace(second=0, microsecond=0)
    campaign = CampaignFactory(status="in_progress", started_at=minute)
    add_logs(campaign, ["sent"] * 3, sent_at=minute + dt.timedelta(seconds=5))
    add_logs(campaign, ["sent"] * 2 + ["failed"], sent_at=minute + dt.timedelta(minutes=2, seconds=30))
    add_logs(campaign, ["sent"], sent_at=timezone.now())  # the current, unsettled minute
    series = stats.sends_per_minute(campaign)
    assert [count for _, count in series][:2] == [3, 2] and sum(c for _, c in series) == 6
    bars = stats.sends_chart_series(campaign)
    assert [count for _, _, count in bars][:3] == [3, 0, 2]  # the quiet minute is a zero bar
    svg = staff_client.get(json_url(campaign)).json()["chart_svg"]
    assert svg.count('class="bar"') == len(bars) and "3 sent" in svg


@pytest.mark.django_db
def test_settled_minutes_are_cached_and_new_sends_still_show(staff_client):
    old = (timezone.now() - dt.timedelta(minutes=30)).replace(second=0, microsecond=0)
    campaign = CampaignFactory(status="in_progress", started_at=old)
    add_logs(campaign, ["sent"] * 2, sent_at=old)
    assert sum(c for _, c in stats.sends_per_minute(campaign)) == 2
    add_logs(campaign, ["sent"] * 4, sent_at=timezone.now())
    assert sum(c for _, c in stats.sends_per_minute(campaign)) == 6


@pytest.mark.django_db
def test_a_minute_is_settled_once_no_open_transaction_can_still_write_into_it():
    # A row's sent_at is its transaction's start: while another session's transaction is open, its minute
    # is not settled (cached); with none open, only the current minute is read again on each page load
    # (it was the last two to three minutes: up to a million rows at 10M recipients).
    def database_minute():
        with connection.cursor() as cursor:
            cursor.execute("SELECT date_trunc('minute', now())")  # the clock settled_before reads
            return cursor.fetchone()[0]

    before = database_minute()
    assert before <= stats.settled_before() <= database_minute()
    with psycopg.connect(workers.test_database_url()) as other:  # a transaction, left open
        began = other.execute("SELECT now()").fetchone()[0]
        assert stats.settled_before() <= began.replace(second=0, microsecond=0)


@pytest.mark.django_db
def test_rate_levels():
    assert [stats.rate_level(r) for r in (99.0, 95.0, 80.0, 79.9, None)] == ["good", "fair", "fair", "poor", ""]
    empty = stats.CampaignStats.of(CampaignFactory.build())
    assert empty.delivery_rate is None and empty.progress_percent == 0 and empty.emails_per_second is None


@pytest.mark.django_db
def test_engagement_figures_are_read_from_counters_not_by_counting_rows(staff_client):
    """Issue 16, item 2: the campaign page and its JSON read counters; the only delivery-log query is the
    sends chart's range scan over (campaign, sent_at)."""
    campaign, _ = make_engaged_campaign()
    for url in (reverse("admin:campaigns_campaign_change", args=[campaign.pk]), json_url(campaign)):
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(url).status_code == 200
        sql = [q["sql"] for q in queries.captured_queries]
        assert not [s for s in sql if "campaigns_linkclick" in s]
        assert [s for s in sql if "campaigns_deliverylog" in s] == [
            s for s in sql if "date_trunc('minute', sent_at)" in s]
        # The chart reads counters: per minute in the campaign's first hours, per hour after.
        assert [s for s in sql if "campaigns_engagementminute" in s or "campaigns_engagementhour" in s]


@pytest.mark.django_db
@pytest.mark.parametrize("counts, rate, level, base", [
    ({"delivered_count": 10000, "complained_count": 5}, 0.05, "ok", "of 10,000 delivered"),
    ({"delivered_count": 10000, "complained_count": 10}, 0.1, "warning", "of 10,000 delivered"),
    ({"delivered_count": 10000, "complained_count": 30}, 0.3, "danger", "of 10,000 delivered"),
    # SMTP reports no deliveries: out of sent, and the page says so.
    ({"delivered_count": 0, "complained_count": 2}, 0.2, "warning", "of 1,000 sent (no deliveries reported"),
])
def test_the_campaign_page_shows_the_complaint_rate_against_the_bulk_sender_rules(staff_client, counts, rate, level,
                                                                                   base):
    campaign = CampaignFactory(status="completed", total_recipients=10000, sent_count=1000, **counts)

    data = staff_client.get(json_url(campaign)).json()["complaint_rate"]
    page = staff_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()

    assert (data["rate"], data["level"]) == (rate, level) and data["base"].startswith(base)
    assert f'class="dash-complaint-rate complaint-{level}' in page
    assert f'id="dash-complaint-rate-value">{rate}%<' in page
    assert ("errornote" in page.split('id="dash-complaint-rate"')[0].rsplit("<p", 1)[1]) is (level == "danger")


# --- issue 25: the header, the A/B wait, a cancel, figures the path cannot know, the chart's points ----------


@pytest.mark.django_db
def test_the_header_counts_the_audience_and_a_cancel_says_sent_and_not_sent_apart():
    started = timezone.now() - dt.timedelta(minutes=5)
    # 105 rows at the start, 5 of them suppressed then: an audience of 100.
    live = CampaignFactory(status="in_progress", started_at=started, total_recipients=105, suppressed_at_start=5,
                           skipped_count=5, sent_count=12, failed_count=3)
    figures = stats.CampaignStats.of(live)
    assert (figures.audience, figures.done, figures.progress_percent) == (100, 15, 15)
    assert dashboard.headline(live, figures) == "15 of 100 processed (15 %)"
    assert dashboard.dashboard_data(live)["ended_label"] == "Finished"  # never "Completed —" while it sends
    cancelled = CampaignFactory(status="cancelled", started_at=started, completed_at=timezone.now(),
                                total_recipients=49_205, suppressed_at_start=5, sent_count=2_000,
                                skipped_count=47_205)
    figures = stats.CampaignStats.of(cancelled)
    assert dashboard.headline(cancelled, figures) == "Cancelled: 2,000 of the audience of 49,200 sent, 47,200 not sent."
    data = dashboard.dashboard_data(cancelled)
    assert (data["ended_label"], data["accepted_rate"], data["rates"]["opened"]) == ("Cancelled", 100.0, 0.0)
    assert data["delivered_known"] is False and data["rates"]["delivered"] is None  # no pool, no SendGrid key


@pytest.mark.django_db
def test_the_ab_wait_says_until_when_and_who_leads_and_the_finish_includes_the_wait(settings):
    settings.SENDGRID_API_KEY = "SG.test"  # the default pool reports deliveries
    campaign = lisbon_campaign()
    Campaign.objects.filter(pk=campaign.pk).update(status="scheduled", scheduled_at=timezone.now())
    pipeline.start_campaign(campaign.pk)
    a, b = campaign.variants.order_by("letter")
    tested = DeliveryLog.objects.filter(campaign=campaign, variant__isnull=False)
    tested.update(status="sent", sent_at=timezone.now())
    SendBatch.objects.filter(campaign=campaign, variant__isnull=False).update(status=SendBatch.Status.DONE)
    DeliveryLog.objects.filter(pk=tested.filter(variant=b).first().pk).update(opened_at=timezone.now())
    Campaign.objects.filter(pk=campaign.pk).update(sent_count=4, opened_count=1)
    campaign.refresh_from_db()
    data = dashboard.dashboard_data(campaign)
    until = timezone.localtime(campaign.ab_test_ends_at)
    assert data["ab_wait"] == (f"A/B test: waiting for the winner until {until:%H:%M} UTC (B leads, 50 % vs 0 % "
                               "opened by people); the rest gets it then.")
    assert data["headline"] == "4 of 17 processed (23 %)"
    assert data["estimated_finish"].endswith("(after the A/B wait)")
    assert data["estimated_finish"][:16] >= f"{until:%Y-%m-%d %H:%M}"
    assert data["delivered_known"] is True
    # The winner chosen: no more wait line.
    Campaign.objects.filter(pk=campaign.pk).update(ab_winner=b)
    campaign.refresh_from_db()
    assert dashboard.dashboard_data(campaign)["ab_wait"] == ""


@pytest.mark.django_db
def test_the_engagement_chart_has_a_point_per_minute_in_the_first_hour():
    assert [stats.engagement_bucket_minutes(dt.timedelta(minutes=m)) for m in (5, 60, 61, 360, 361)] == [
        1, 1, 5, 5, None]
    now = timezone.now()
    campaign = CampaignFactory(status="in_progress", started_at=now - dt.timedelta(minutes=20))
    logs = add_logs(campaign, ["sent"] * 3, sent_at=now - dt.timedelta(minutes=20))
    for log, minutes_ago in zip(logs, (15, 15, 3)):
        opens_and_clicks.record_open(log.pk, IPHONE_MAIL, at=(now - dt.timedelta(minutes=minutes_ago)).timestamp())
    series = stats.engagement_series(campaign, now=now)
    assert len(series) == 21 and {point[1] for point in series} == {1}  # 20 minutes and this one, per minute
    assert [point[2] for point in series if point[2]] == [2, 1]
    assert "(per minute)" in stats.engagement_chart_svg(series)
    old = stats.engagement_series(campaign, now=now + dt.timedelta(days=1))  # a day later: the hourly counters
    assert {point[1] for point in old} == {60} and sum(point[2] for point in old) == 3
