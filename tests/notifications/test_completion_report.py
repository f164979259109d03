"""Issue 23, item 4: when a campaign ends, a report goes to whoever scheduled it and to
CAMPAIGN_REPORT_RECIPIENTS, through the environment's provider, with the right figures; never counted in
the campaign; off when the campaign says so."""

import pytest
from django.utils import timezone

from campaigns import services
from campaigns.models import Campaign
from campaigns.notifications.completion_report import send_completion_report
from tests.admin.conftest import add_logs, add_recipients
from tests.sending.test_pipeline import wait_for
from tests.support.factories import CampaignFactory, UserFactory


def reports(sink):
    return [m for m in sink.messages() if m["Subject"].startswith("Campaign ")]


def text_of(message):
    part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    return part.get_payload(decode=True).decode()


@pytest.mark.slow
def test_a_completed_campaigns_report_reaches_who_scheduled_it_with_the_right_figures(
        start_worker, smtp_sink_server, settings, worker_env):
    settings.CAMPAIGN_REPORT_RECIPIENTS = ["team@example.com"]
    worker_env["CAMPAIGN_REPORT_RECIPIENTS"] = "team@example.com"
    scheduler = UserFactory(email="planner@example.com")
    smtp_sink_server.set_faults(reject_rcpt=r"r000[0-2]@")  # three recipients refused (550)
    start_worker(["scheduler", "senders"], concurrency=2)
    campaign = CampaignFactory(name="Spring news")
    add_recipients(campaign, 10)
    services.send_now(campaign.pk, user_id=scheduler.pk)

    got = wait_for(lambda: reports(smtp_sink_server), timeout=120)
    wait_for(lambda: len(reports(smtp_sink_server)) == 2, timeout=30)
    got = reports(smtp_sink_server)
    assert sorted(m["X-Sink-Rcpt-To"] for m in got) == ["planner@example.com", "team@example.com"]
    body = text_of(got[0])
    campaign.refresh_from_db()
    assert (campaign.status, campaign.sent_count, campaign.failed_count) == ("completed", 7, 3)
    assert got[0]["Subject"] == "Campaign completed: Spring news"
    for line in ("Recipients: 10", "Sent: 7 (70.0 % of those attempted)", "Failed: 3", "Unknown: 0"):
        assert line in body, body
    # The failure reason, with its count (the address an SMTP reply names is taken out).
    assert "3 × " in body and "<address>: recipient rejected by sink" in body and "r0000@" not in body
    assert f"/admin/campaigns/campaign/{campaign.pk}/change/" in body
    assert "Duration: " in body
    # Not counted in the campaign: its counters and delivery logs are the ten recipients only.
    assert campaign.delivery_logs.count() == 10 and campaign.processed_count == 10


def test_the_report_can_be_turned_off_and_is_sent_once(db, smtp_sink_server, settings):
    settings.CAMPAIGN_REPORT_RECIPIENTS = ["team@example.com"]
    campaign = CampaignFactory(status="completed", started_at=timezone.now(), completed_at=timezone.now(),
                               completion_report=False)
    add_logs(campaign, ["sent"])
    assert send_completion_report(campaign.pk) == []
    Campaign.objects.filter(pk=campaign.pk).update(completion_report=True)
    assert send_completion_report(campaign.pk) == ["team@example.com"]
    assert send_completion_report(campaign.pk) == []  # a redelivered task sends nothing more
    assert len(reports(smtp_sink_server)) == 1


def test_a_draft_cancelled_before_sending_gets_no_report(db, smtp_sink_server, settings):
    settings.CAMPAIGN_REPORT_RECIPIENTS = ["team@example.com"]
    campaign = CampaignFactory()
    add_recipients(campaign, 1)
    services.cancel(campaign.pk)
    assert send_completion_report(campaign.pk) == []
    assert reports(smtp_sink_server) == []


def test_a_failed_campaigns_report_gives_its_reason(db, smtp_sink_server, settings):
    settings.CAMPAIGN_REPORT_RECIPIENTS = ["team@example.com"]
    campaign = CampaignFactory(status="failed", started_at=timezone.now(), completed_at=timezone.now(),
                               last_error="Every provider refused: authentication failed", name="{{ sneaky }}")
    add_logs(campaign, ["failed", "failed", "sent"])
    campaign.delivery_logs.filter(status="failed").update(last_error="550 mailbox unavailable")
    assert send_completion_report(campaign.pk) == ["team@example.com"]
    body = text_of(reports(smtp_sink_server)[0])
    assert "2 × 550 mailbox unavailable" in body and "authentication failed" in body and "sneaky" in body
