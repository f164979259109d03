"""Staff actions on campaigns (campaigns.services), their commands, and the sweep."""

import time
from datetime import timedelta
from io import StringIO
from uuid import uuid4

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from campaigns import services
from campaigns.exceptions import CampaignError, IllegalTransition
from campaigns.models import Campaign, DeliveryLog, SendBatch
from campaigns.sending import pipeline, sweep
from tests.support.factories import CampaignFactory, DeliveryLogFactory, RecipientFactory

D = DeliveryLog.Status
S = Campaign.Status


def started_campaign(n=5, **fields):
    campaign = CampaignFactory(status=S.SCHEDULED, scheduled_at=timezone.now(), **fields)
    RecipientFactory.create_batch(n, campaign=campaign)
    pipeline.start_campaign(campaign.pk)
    campaign.refresh_from_db()
    return campaign


@pytest.mark.django_db
def test_scheduling_needs_recipients_and_a_time_zone():
    campaign = CampaignFactory()
    with pytest.raises(CampaignError, match="has no recipients"):
        services.send_now(campaign.pk)
    RecipientFactory(campaign=campaign)
    with pytest.raises(CampaignError, match="needs a time zone"):
        services.schedule(campaign.pk, timezone.now().replace(tzinfo=None))
    assert "Scheduled for" in services.schedule(campaign.pk, timezone.now() + timedelta(days=2))
    campaign.refresh_from_db()
    assert campaign.status == S.SCHEDULED


@pytest.mark.django_db
def test_a_campaign_is_not_started_before_its_time():
    campaign = CampaignFactory(status=S.SCHEDULED, scheduled_at=timezone.now() + timedelta(hours=1))
    RecipientFactory(campaign=campaign)
    assert pipeline.start_campaign(campaign.pk) is False  # e.g. a stale ETA task of an earlier schedule
    campaign.refresh_from_db()
    assert campaign.status == S.SCHEDULED and not DeliveryLog.objects.exists()


@pytest.mark.django_db
def test_start_creates_one_log_per_recipient_in_batches_and_skips_suppressed():
    campaign = CampaignFactory(status=S.SCHEDULED, scheduled_at=timezone.now(), batch_size=2)
    recipients = RecipientFactory.create_batch(5, campaign=campaign)
    from tests.support.factories import SuppressionFactory

    SuppressionFactory(email=recipients[1].email, reason="bounced")
    assert pipeline.start_campaign(campaign.pk) is True
    assert pipeline.start_campaign(campaign.pk) is False  # a second start does nothing

    logs = DeliveryLog.objects.filter(campaign=campaign).order_by("recipient_id")
    assert [log.status for log in logs] == [D.PENDING, D.SKIPPED, D.PENDING, D.PENDING, D.PENDING]
    assert logs[1].last_error == "suppressed: bounced"
    batches = SendBatch.objects.filter(campaign=campaign).order_by("number")
    assert [(b.number, b.size, b.status) for b in batches] == [(0, 2, SendBatch.Status.QUEUED),
                                                               (1, 2, SendBatch.Status.QUEUED)]
    assert pipeline.unfinished_batch_numbers(campaign.pk) == [0, 1]
    campaign.refresh_from_db()
    assert (campaign.status, campaign.total_recipients, campaign.skipped_count) == (S.IN_PROGRESS, 5, 1)


@pytest.mark.django_db
def test_illegal_actions_are_refused_with_a_clear_message():
    campaign = CampaignFactory()
    with pytest.raises(IllegalTransition, match="Cannot pause campaign .*: it is draft"):
        services.pause(campaign.pk)
    with pytest.raises(CampaignError, match="only a started campaign"):
        services.retry_failed(campaign.pk)


@pytest.mark.django_db
def test_retry_failed_requeues_only_failed_recipients_in_fresh_batches():
    campaign = started_campaign(6, batch_size=2)
    logs = list(DeliveryLog.objects.filter(campaign=campaign).order_by("id"))
    for log, status in zip(logs, [D.SENT, D.FAILED, D.FAILED, D.SENT, D.UNKNOWN, D.FAILED]):
        DeliveryLog.objects.filter(pk=log.pk).update(status=status, last_error="x")
    Campaign.objects.filter(pk=campaign.pk).update(status=S.COMPLETED, sent_count=2, failed_count=3,
                                                   unknown_count=1)

    assert services.retry_failed(campaign.pk) == "Retrying 3 failed recipients."
    campaign.refresh_from_db()
    assert campaign.status == S.IN_PROGRESS and campaign.failed_count == 0
    pending = DeliveryLog.objects.filter(campaign=campaign, status=D.PENDING)
    assert pending.count() == 3
    assert set(pending.values_list("batch_number", flat=True)) == {3, 4}  # after the original batches 0-2
    assert set(SendBatch.objects.filter(campaign=campaign, number__gte=3, status=SendBatch.Status.QUEUED)
               .values_list("number", "size")) == {(3, 2), (4, 1)}
    assert DeliveryLog.objects.filter(campaign=campaign, status=D.UNKNOWN).count() == 1  # never automatic


@pytest.mark.django_db
def test_resend_unknown_is_explicit_and_counts():
    campaign = started_campaign(3)
    DeliveryLog.objects.filter(campaign=campaign).update(status=D.UNKNOWN)
    Campaign.objects.filter(pk=campaign.pk).update(status=S.COMPLETED, unknown_count=3)
    assert services.resend_unknown(campaign.pk) == "Re-sending 3 recipients whose delivery was unknown."
    campaign.refresh_from_db()
    assert campaign.unknown_count == 0 and campaign.status == S.IN_PROGRESS
    with pytest.raises(CampaignError, match="no unknown recipients"):
        Campaign.objects.filter(pk=campaign.pk).update(status=S.COMPLETED)
        services.resend_unknown(campaign.pk)


@pytest.mark.django_db
def test_sweep_recovers_expired_claims_by_whether_the_provider_call_began():
    campaign = started_campaign(4, batch_size=2)
    a, b, c, d = DeliveryLog.objects.filter(campaign=campaign).order_by("id")
    expired = timezone.now() - timedelta(seconds=1)
    batches = SendBatch.objects.filter(campaign=campaign)
    # Batch 0's worker died with b's call begun; batch 1 is live, with c's call begun.
    batches.filter(number=0).update(status=SendBatch.Status.SENDING, claim_token=uuid4(), lease_expires_at=expired,
                                    in_flight=[b.pk], call_started_at=expired)
    batches.filter(number=1).update(status=SendBatch.Status.SENDING, claim_token=uuid4(),
                                    lease_expires_at=timezone.now() + timedelta(minutes=5), in_flight=[c.pk],
                                    call_started_at=timezone.now())

    report = sweep.sweep()

    assert (report.released, report.unknown) == (1, 1)
    statuses = dict(DeliveryLog.objects.filter(campaign=campaign).values_list("pk", "status"))
    assert statuses == {a.pk: D.PENDING, b.pk: D.UNKNOWN, c.pk: D.PENDING, d.pk: D.PENDING}
    assert dict(batches.values_list("number", "status")) == {0: SendBatch.Status.QUEUED, 1: SendBatch.Status.SENDING}
    assert batches.get(number=1).in_flight == [c.pk]  # a live claim is never taken
    campaign.refresh_from_db()
    assert campaign.unknown_count == 1
    assert "not re-sent automatically" in DeliveryLog.objects.get(pk=b.pk).last_error


@pytest.mark.django_db
def test_sweep_finalizes_a_campaign_whose_last_batch_vanished():
    campaign = started_campaign(2)
    DeliveryLog.objects.filter(campaign=campaign).update(status=D.SENT)
    Campaign.objects.filter(pk=campaign.pk).update(sent_count=2)
    assert sweep.sweep().finalized == [campaign.pk]
    campaign.refresh_from_db()
    assert campaign.status == S.COMPLETED and campaign.completed_at
    assert sweep.sweep().finalized == []  # exactly once


@pytest.mark.django_db
def test_a_campaign_where_nothing_could_be_sent_fails_with_the_reason():
    campaign = started_campaign(2)
    DeliveryLog.objects.filter(campaign=campaign).update(status=D.FAILED, last_error="550 mailbox unavailable")
    Campaign.objects.filter(pk=campaign.pk).update(failed_count=2)
    assert pipeline.finalize_if_done(campaign.pk) == S.FAILED
    campaign.refresh_from_db()
    assert "550 mailbox unavailable" in campaign.last_error


@pytest.mark.django_db
def test_campaign_commands_report_and_refuse_clearly():
    campaign = started_campaign(3)
    out = StringIO()
    call_command("pause_campaign", campaign.pk, stdout=out)
    assert f"Campaign #{campaign.pk}: Paused" in out.getvalue()
    with pytest.raises(CommandError, match="Cannot pause campaign"):
        call_command("pause_campaign", campaign.pk)
    call_command("resume_campaign", campaign.pk, stdout=out)
    call_command("cancel_campaign", campaign.pk, stdout=out)
    assert "Cancelled: 3 recipients not yet sent were skipped." in out.getvalue()
    with pytest.raises(CommandError, match="does not exist"):
        call_command("cancel_campaign", 999999)


@pytest.mark.django_db
def test_schedule_command_reads_local_time_in_the_configured_zone(settings):
    settings.TIME_ZONE = "America/New_York"
    campaign = CampaignFactory()
    RecipientFactory(campaign=campaign)
    call_command("schedule_campaign", campaign.pk, "--at", "2031-07-01 09:00", stdout=StringIO())
    campaign.refresh_from_db()
    assert campaign.scheduled_at.isoformat() == "2031-07-01T13:00:00+00:00"  # 09:00 EDT
    with pytest.raises(CommandError, match="is not a date and time"):
        call_command("schedule_campaign", campaign.pk, "--at", "next tuesday")


def test_send_test_email_renders_the_first_recipient_and_touches_nothing(
        transactional_db, smtp_sink_server, no_sendgrid):
    campaign = CampaignFactory()
    RecipientFactory(campaign=campaign, email="first@example.com", first_name="Ada")
    out = StringIO()
    call_command("send_test_email", campaign.pk, "qa@example.com", "boss@example.com", stdout=out)

    assert ("Test email sent to 2 of 2 addresses via smtp (the data of first@example.com, the first of the "
            "audience).") in out.getvalue()
    messages = smtp_sink_server.messages()
    assert sorted(m["X-Sink-Rcpt-To"] for m in messages) == ["boss@example.com", "qa@example.com"]
    assert messages[0]["Subject"] == "[TEST] News for Ada"
    assert not DeliveryLog.objects.exists()
    campaign.refresh_from_db()
    assert campaign.status == S.DRAFT and campaign.sent_count == 0
    with pytest.raises(CommandError, match="Not an email address"):
        call_command("send_test_email", campaign.pk, "not-an-address")


def test_a_test_email_uses_the_first_of_the_audience_or_the_recipient_staff_chose(db, smtp_sink_server, no_sendgrid):
    from campaigns.audience import segments
    from campaigns.models import Suppression

    campaign = CampaignFactory(subject="For {{ first_name }} in {{ city }}")
    for email, name, city in [("mia@example.com", "Mia", "São Paulo"), ("gone@example.com", "Gus", "Lisbon"),
                              ("rui@example.com", "Rui", "Lisbon")]:
        RecipientFactory(campaign=campaign, email=email, first_name=name, data={"city": city})
    Suppression.objects.create(email="gone@example.com", reason="bounced")
    segments.save_segment(campaign.pk, {"match": "all", "conditions": [
        {"column": "city", "operator": "equals", "value": "Lisbon"}]})

    text = services.send_test_email(campaign.pk, ["qa@example.com"])
    assert text == ("Test email sent to 1 of 1 addresses via smtp (the data of rui@example.com, the first of the "
                    "audience).")
    text = services.send_test_email(campaign.pk, ["qa@example.com"], recipient="MIA@example.com")
    assert text == "Test email sent to 1 of 1 addresses via smtp (the data of mia@example.com)."
    assert [m["Subject"] for m in smtp_sink_server.messages()] == ["[TEST] For Rui in Lisbon",
                                                                   "[TEST] For Mia in São Paulo"]
    with pytest.raises(CampaignError, match="nobody@example.com is not a recipient of this campaign"):
        services.send_test_email(campaign.pk, ["qa@example.com"], recipient="nobody@example.com")
    with pytest.raises(CampaignError, match="needs the permission to export recipient data"):
        services.send_test_email(campaign.pk, ["qa@example.com"], recipient="mia@example.com",
                                 with_recipient_data=False)
    segments.save_segment(campaign.pk, {"match": "all", "conditions": [
        {"column": "city", "operator": "equals", "value": "Porto"}]})
    assert "(sample data: the audience is empty)" in services.send_test_email(campaign.pk, ["qa@example.com"])


def test_a_test_email_of_an_ab_test_sends_one_message_per_variant(db, smtp_sink_server, no_sendgrid):
    from campaigns.models import CampaignVariant

    campaign = CampaignFactory(subject="Not sent in an A/B test", ab_test_percent=20)
    RecipientFactory(campaign=campaign, email="ana@example.com", first_name="Ana")
    CampaignVariant.objects.create(campaign=campaign, letter="A", subject="Hello {{ first_name }}")
    CampaignVariant.objects.create(campaign=campaign, letter="B", subject="Spring for {{ first_name }}",
                                   from_name="Ana at Acme", html_body='<p>B body</p><a href="{{ unsubscribe_url }}">U</a>')
    text = services.send_test_email(campaign.pk, ["qa@example.com", "boss@example.com"])
    assert text == ("Test email sent via smtp: one message per variant (A, B) to each of 2 addresses, 4 of 4 messages "
                    "in all (the data of ana@example.com, the first of the audience).")
    received = sorted((m["X-Sink-Rcpt-To"], m["Subject"], m["From"]) for m in smtp_sink_server.messages())
    assert received == [
        ("boss@example.com", "[TEST A] Hello Ana", "Acme <news@example.com>"),
        ("boss@example.com", "[TEST B] Spring for Ana", "Ana at Acme <news@example.com>"),
        ("qa@example.com", "[TEST A] Hello Ana", "Acme <news@example.com>"),
        ("qa@example.com", "[TEST B] Spring for Ana", "Ana at Acme <news@example.com>")]
    bodies = {m["Subject"]: m.get_body(("html",)).get_content() for m in smtp_sink_server.messages()}
    assert "B body" in bodies["[TEST B] Spring for Ana"] and "B body" not in bodies["[TEST A] Hello Ana"]


def test_a_test_email_of_a_campaign_with_a_pool_goes_through_the_pool_and_takes_its_quota(
        transactional_db, clean_broker, smtp_sink_server, second_sink, no_sendgrid):
    from campaigns.sending import routing
    from tests.support.factories import SendingAccountFactory, pool_of

    account = SendingAccountFactory(name="relay-2", port=second_sink.port, per_day=2)
    campaign = CampaignFactory(pool=pool_of(account))
    out = StringIO()
    call_command("send_test_email", campaign.pk, "qa@example.com", stdout=out)

    assert "via relay-2" in out.getvalue()
    assert [m["X-Sink-Rcpt-To"] for m in second_sink.messages()] == ["qa@example.com"]
    assert smtp_sink_server.count() == 0  # not the environment's server
    assert routing.quota_for(account).look().room == 1
    assert routing.sends_per_account(campaign.pk) == []  # not one of the campaign's sends


def test_a_scheduled_campaign_starts_at_its_time_not_before(start_worker, smtp_sink_server, no_sendgrid):
    campaign = CampaignFactory()
    RecipientFactory.create_batch(3, campaign=campaign)
    start_worker(["scheduler", "senders"], concurrency=1)
    when = timezone.now() + timedelta(seconds=3)
    services.schedule(campaign.pk, when)
    services.schedule(campaign.pk, when + timedelta(seconds=2))  # rescheduled: the first ETA must not start it

    deadline = time.monotonic() + 60
    while campaign.status != S.COMPLETED and time.monotonic() < deadline:
        time.sleep(0.2)
        campaign.refresh_from_db()
    assert campaign.status == S.COMPLETED
    assert campaign.started_at >= when + timedelta(seconds=2)
    assert smtp_sink_server.count() == 3
