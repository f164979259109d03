"""The ledger's guarded writes, one at a time against the real database: claim ownership, late results,
evidence, finalisation, the sweep's bounds and the counter check."""

import datetime
import re
from io import StringIO
from uuid import uuid4

import pytest
import redis as redis_lib
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import F
from django.utils import timezone

from campaigns import services
from campaigns.engagement import sendgrid_webhook
from campaigns.models import Campaign, DeliveryLog, Recipient, SendBatch, Suppression
from campaigns.sending import ledger, pipeline, sweep
from campaigns.sending.providers.base import DeliveryResult, Outcome
from tests.support.factories import SuppressionFactory
from tests.test_services import started_campaign

D = DeliveryLog.Status
B = SendBatch.Status
S = Campaign.Status


def claim(rows, began=True, expired=False):
    """Put the batch of ROWS under a fresh claim, as CLAIM_BATCH does, with ROWS in flight when BEGAN;
    returns its ledger."""
    token = uuid4()
    now = timezone.now()
    lease = now - datetime.timedelta(seconds=1) if expired else now + datetime.timedelta(minutes=5)
    batch = SendBatch.objects.get(campaign_id=rows[0].campaign_id, number=rows[0].batch_number)
    SendBatch.objects.filter(pk=batch.pk).update(
        status=B.SENDING, claim_token=token, lease_expires_at=lease, attempts=F("attempts") + 1,
        in_flight=[r.pk for r in rows] if began else [], call_started_at=now if began else None)
    return ledger.BatchLedger(rows[0].campaign_id, batch.pk, token, {r.pk: 1 for r in rows})


def batch_of(row):
    return SendBatch.objects.get(campaign_id=row.campaign_id, number=row.batch_number)


def assert_counters_match(campaign):
    assert ledger.check_counters([campaign.pk]) == []


def rows_of(campaign):
    return list(DeliveryLog.objects.filter(campaign=campaign).order_by("id"))


def claim_and_lose():
    """A batch of two rows whose claim expired before its call began and was taken by another claim.
    Returns (the lost claim's ledger, the live claim's ledger, the two rows)."""
    campaign = started_campaign(2)
    rows = rows_of(campaign)
    lost = claim(rows, began=False)
    live = claim(rows, began=False)  # the sweep recovered it, another task claimed it
    return lost, live, rows


@pytest.mark.django_db
def test_a_worker_whose_claim_expired_cannot_overwrite_a_row_another_claim_now_holds():
    campaign = started_campaign(2)
    row, other = rows_of(campaign)
    dead = claim([row, other], expired=True)
    sweep.sweep()  # the dead worker's rows: unknown
    Campaign.objects.filter(pk=campaign.pk).update(status=S.COMPLETED)
    services.resend_unknown(campaign.pk)  # staff choose to re-send them ...
    live = claim(rows_of(campaign))  # ... and a new batch claims them

    dead.record("smtp", [DeliveryResult(row.pk, Outcome.FAILED, error="late 550"),
                         DeliveryResult(other.pk, Outcome.SENT, message_id="late")])

    assert {r.status for r in rows_of(campaign)} == {D.PENDING}  # still the live claim's to send
    requeued = batch_of(rows_of(campaign)[0])  # the batch the re-send made
    assert requeued.claim_token == live.token and requeued.status == B.SENDING
    assert_counters_match(campaign)


@pytest.mark.django_db
def test_a_late_result_settles_a_row_the_sweep_had_marked_unknown():
    campaign = started_campaign(3)
    sent, failed, deferred = rows_of(campaign)
    dead = claim([sent, failed, deferred], expired=True)
    assert sweep.sweep().unknown == 3

    dead.record("smtp", [DeliveryResult(sent.pk, Outcome.SENT, message_id="<m1@x>"),
                         DeliveryResult(failed.pk, Outcome.FAILED, error="SMTP RCPT TO refused: 550 5.1.1"),
                         DeliveryResult(deferred.pk, Outcome.DEFERRED, error="451")])

    assert [r.status for r in rows_of(campaign)] == [D.SENT, D.FAILED, D.UNKNOWN]
    campaign.refresh_from_db()
    assert (campaign.sent_count, campaign.failed_count, campaign.unknown_count) == (1, 1, 1)
    assert_counters_match(campaign)


@pytest.mark.django_db
def test_the_call_began_mark_is_set_only_while_the_batch_is_still_this_claims():
    lost, live, (a, b) = claim_and_lose()

    assert lost.call_began([a.pk, b.pk]) == set()
    assert live.call_began([a.pk, b.pk]) == {a.pk, b.pk}
    assert batch_of(a).in_flight == [a.pk, b.pk]

    live.call_ended([a.pk])  # refused before anything of a's was accepted
    assert batch_of(a).in_flight == [b.pk]
    assert live.release_unstarted() == 1  # the worker stops: a goes back to be sent, b's fate is unknown
    assert [(r.status, r.attempts) for r in rows_of(a.campaign)] == [(D.PENDING, 0), (D.UNKNOWN, 1)]
    assert (batch_of(a).status, batch_of(a).in_flight, batch_of(a).claim_token) == (B.WAITING, [], None)
    assert_counters_match(a.campaign)


@pytest.mark.django_db
def test_the_mark_of_one_message_is_set_only_while_the_claim_still_owns_the_batch():
    lost, live, (a, b) = claim_and_lose()

    assert live.call_began([a.pk]) == {a.pk}  # SMTP marks one message at a time
    assert lost.call_began([b.pk]) == set()
    assert batch_of(a).in_flight == [a.pk]


@pytest.mark.django_db
def test_a_lost_claim_writes_no_result_and_a_result_leaves_the_in_flight_set():
    lost, live, (a, b) = claim_and_lose()
    live.call_began([a.pk, b.pk])

    lost.record("smtp", [DeliveryResult(a.pk, Outcome.FAILED, error="550 from a stale worker")])
    live.record("smtp", [DeliveryResult(b.pk, Outcome.SENT, message_id="<b@x>")])

    assert [r.status for r in rows_of(a.campaign)] == [D.PENDING, D.SENT]
    assert batch_of(a).in_flight == [a.pk]  # what a crash now would make unknown
    assert_counters_match(a.campaign)


@pytest.mark.django_db
def test_rows_deferred_after_a_cancel_end_skipped_as_cancelled():
    campaign = started_campaign(2)
    a, b = rows_of(campaign)
    batch_ledger = claim([a, b])
    services.cancel(campaign.pk)  # while the batch is in flight

    batch_ledger.record("smtp", [DeliveryResult(a.pk, Outcome.SENT), DeliveryResult(b.pk, Outcome.DEFERRED)])

    assert [(r.status, r.last_error) for r in rows_of(campaign)] == [(D.SENT, ""), (D.SKIPPED, "cancelled")]
    assert_counters_match(campaign)


@pytest.mark.django_db
def test_the_sweep_skips_rows_of_a_cancelled_campaign_that_came_back_to_pending():
    campaign = started_campaign(2)
    a, _ = rows_of(campaign)
    claim([a], began=False, expired=True)
    services.cancel(campaign.pk)

    sweep.sweep()  # the expired claim goes back to pending, then is skipped

    assert {(r.status, r.last_error) for r in rows_of(campaign)} == {(D.SKIPPED, "cancelled")}
    assert_counters_match(campaign)


@pytest.mark.django_db
def test_finalizing_never_completes_over_rows_a_retry_put_back_to_pending(monkeypatch):
    campaign = started_campaign(2)
    a, b = rows_of(campaign)
    DeliveryLog.objects.filter(pk=a.pk).update(status=D.SENT)
    DeliveryLog.objects.filter(pk=b.pk).update(status=D.FAILED, last_error="550")
    Campaign.objects.filter(pk=campaign.pk).update(sent_count=1, failed_count=1)
    original = pipeline.has_unfinished_rows

    def retry_lands_right_after_the_check(campaign_id):
        unfinished = original(campaign_id)
        services.retry_failed(campaign_id)  # the race: "retry failed" commits in between
        return unfinished
    monkeypatch.setattr(pipeline, "has_unfinished_rows", retry_lands_right_after_the_check)

    assert pipeline.finalize_if_done(campaign.pk) is None

    campaign.refresh_from_db()
    assert campaign.status == S.IN_PROGRESS
    assert DeliveryLog.objects.get(pk=b.pk).status == D.PENDING


@pytest.mark.django_db
def test_finalizing_waits_for_a_batch_whose_rows_are_written_but_whose_end_may_still_pause_the_campaign():
    # Seen in a parallel run: batch 0 wrote its rows (6 of 10 refused as dead: the circuit breaker) and,
    # before its end paused the campaign, batch 2 finished and completed it; the breaker's pause was lost.
    campaign = started_campaign(2, batch_size=1)
    first, second = rows_of(campaign)
    held = claim([first])
    held.write([(first.pk, D.FAILED, "", "", "550 5.1.1 user unknown")])
    DeliveryLog.objects.filter(pk=second.pk).update(status=D.SENT)
    Campaign.objects.filter(pk=campaign.pk).update(sent_count=1)

    assert pipeline.finalize_if_done(campaign.pk) is None  # batch 0 still holds its claim
    campaign.refresh_from_db()
    assert campaign.status == S.IN_PROGRESS

    SendBatch.objects.filter(campaign=campaign, number=first.batch_number).update(status=B.DONE, claim_token=None)
    assert pipeline.finalize_if_done(campaign.pk) == S.COMPLETED


@pytest.fixture
def senders_queue(transactional_db, clean_broker):
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    yield lambda: client.llen("senders")
    client.close()


def test_the_sweep_judges_a_stall_by_the_database_clock_and_re_dispatches_once_per_window(
        senders_queue, monkeypatch, settings):
    settings.SWEEP_STALL_SECONDS = 60
    campaign = started_campaign(5, batch_size=1)
    dispatched = senders_queue()
    assert dispatched == 5

    # A worker whose clock is an hour ahead must not see the campaign as stalled: its progress was
    # written (by the database's clock) just now.
    ahead = timezone.now() + datetime.timedelta(hours=1)
    monkeypatch.setattr(timezone, "now", lambda: ahead)
    sweep.sweep()
    assert senders_queue() == dispatched
    monkeypatch.undo()

    # Really stalled: re-dispatched once, however many sweeps run in the window.
    Campaign.objects.filter(pk=campaign.pk).update(last_progress_at=timezone.now() - datetime.timedelta(minutes=5))
    for _ in range(4):
        sweep.sweep()
    assert senders_queue() == dispatched + 5


def test_the_sweep_adds_no_task_for_a_campaign_whose_batch_is_being_sent_under_a_live_lease(
        senders_queue, settings):
    # Found by the chaos run (seed 1): batches paced to a few messages a second write no result for longer
    # than the stall window. Each sweep then queued every waiting batch again, behind the busy senders:
    # 46 tasks for 7 batches within a minute, and more for as long as the campaign was slow.
    settings.SWEEP_STALL_SECONDS = 60
    campaign = started_campaign(5, batch_size=1)
    dispatched = senders_queue()
    first, *_ = rows_of(campaign)
    claim([first], began=False)  # a sender holds batch 0; its heartbeat keeps the lease live
    Campaign.objects.filter(pk=campaign.pk).update(last_progress_at=timezone.now() - datetime.timedelta(minutes=5))

    for _ in range(3):
        sweep.sweep()
    assert senders_queue() == dispatched

    # Its lease ended (the sender died): the campaign is stalled, and its batches go out again once.
    SendBatch.objects.filter(campaign=campaign, number=first.batch_number).update(
        lease_expires_at=timezone.now() - datetime.timedelta(seconds=1))
    sweep.sweep()
    assert senders_queue() > dispatched


@pytest.mark.django_db
def test_evidence_from_the_provider_settles_unknown_rows():
    campaign = started_campaign(4)
    delivered, opened, dropped, silent = rows_of(campaign)
    claim([delivered, opened, dropped, silent], expired=True)
    sweep.sweep()

    def event(row, kind, n):
        return {"sg_event_id": f"ev-{row.pk}-{n}", "event": kind, "email": row.email, "timestamp": 1_700_000_000,
                "delivery_id": str(row.pk), "campaign_id": str(campaign.pk), "reason": "Invalid"}
    report = sendgrid_webhook.apply_events([event(delivered, "processed", 1), event(delivered, "delivered", 2),
                                  event(opened, "open", 1), event(dropped, "dropped", 1)])

    assert report.settled == 3
    assert [r.status for r in rows_of(campaign)] == [D.SENT, D.SENT, D.FAILED, D.UNKNOWN]
    assert_counters_match(campaign)


@pytest.mark.django_db
def test_resend_unknown_re_sends_only_rows_without_evidence():
    campaign = started_campaign(2)
    opened, silent = rows_of(campaign)
    claim([opened, silent], expired=True)
    sweep.sweep()
    DeliveryLog.objects.filter(pk=opened.pk).update(opened_at=timezone.now())  # e.g. an SMTP tracking pixel
    Campaign.objects.filter(pk=campaign.pk).update(status=S.COMPLETED)

    message = services.resend_unknown(campaign.pk)

    assert "Re-sending 1 recipients" in message and "1 more were settled as sent" in message
    assert [r.status for r in rows_of(campaign)] == [D.SENT, D.PENDING]
    assert_counters_match(campaign)


@pytest.mark.django_db
def test_a_machine_open_is_evidence_of_sending_too():
    """Issue 16, item 3: Apple's prefetch of the pixel proves the message reached a mailbox."""
    campaign = started_campaign(2)
    prefetched, silent = rows_of(campaign)
    claim([prefetched, silent], expired=True)
    sweep.sweep()
    DeliveryLog.objects.filter(pk=prefetched.pk).update(machine_opened_at=timezone.now())
    Campaign.objects.filter(pk=campaign.pk).update(status=S.COMPLETED)

    message = services.resend_unknown(campaign.pk)

    assert "Re-sending 1 recipients" in message and "1 more were settled as sent" in message
    assert [r.status for r in rows_of(campaign)] == [D.SENT, D.PENDING]
    assert_counters_match(campaign)


@pytest.mark.django_db
def test_check_ledger_reports_drift_and_fixes_it():
    campaign = started_campaign(3)
    DeliveryLog.objects.filter(campaign=campaign).update(status=D.SENT)
    Campaign.objects.filter(pk=campaign.pk).update(sent_count=1, unknown_count=2)

    with pytest.raises(CommandError, match="2 counters of 1 campaigns drifted"):
        call_command("check_ledger", str(campaign.pk), stdout=StringIO())
    out = StringIO()
    call_command("check_ledger", str(campaign.pk), "--fix", stdout=out)

    assert f"Campaign #{campaign.pk}: sent_count is 1, the rows say 3 (fixed)" in out.getvalue()
    campaign.refresh_from_db()
    assert (campaign.sent_count, campaign.unknown_count) == (3, 0)
    out = StringIO()
    call_command("check_ledger", stdout=out)
    assert "Counters match the rows." in out.getvalue()


COUNT_ROW_WRITES = """
CREATE TABLE test_row_writes (id bigint, status text);
CREATE FUNCTION test_count_row_writes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO test_row_writes VALUES (NEW.id, NEW.status); RETURN NEW; END $$;
CREATE TRIGGER test_count_row_writes AFTER UPDATE ON campaigns_deliverylog
FOR EACH ROW EXECUTE FUNCTION test_count_row_writes();
"""


@pytest.mark.django_db
@pytest.mark.parametrize("provider", ["smtp", "sendgrid"])
def test_each_delivery_row_is_written_once_after_it_is_created_with_its_result(provider, request, settings):
    """The claim, the lease, the call-began marks and the chunks' bookkeeping go to the batch's row;
    a delivery row is updated once, with its result (SMTP: in chunks of SEND_SMTP_CHUNK)."""
    sink = request.getfixturevalue("smtp_sink_server")
    if provider == "sendgrid":
        request.getfixturevalue("fake_sendgrid")
    else:
        request.getfixturevalue("no_sendgrid")
    settings.SEND_SMTP_CHUNK = 3
    campaign = started_campaign(8)
    rows = rows_of(campaign)
    sink.set_faults(reject_rcpt=re.escape(rows[1].email))  # one permanent refusal (SMTP)
    SuppressionFactory(email=rows[2].email)  # suppressed after the start: skipped when its batch is claimed
    with connection.cursor() as cursor:
        cursor.execute(COUNT_ROW_WRITES)

    report = pipeline.send_batch(campaign.pk, 0)

    with connection.cursor() as cursor:
        cursor.execute("SELECT id, status FROM test_row_writes ORDER BY id")
        writes = cursor.fetchall()
    final = [(r.pk, r.status) for r in rows_of(campaign)]
    assert writes == final  # one write per row, and it is the result
    assert {status for _, status in final} == ({D.SENT, D.FAILED, D.SKIPPED} if provider == "smtp"
                                               else {D.SENT, D.SKIPPED})
    assert report.skipped == 1 and report.sent == (6 if provider == "smtp" else 7)
    assert (batch_of(rows[0]).status, batch_of(rows[0]).in_flight) == (B.DONE, [])
    assert_counters_match(campaign)


@pytest.mark.django_db
def test_early_evidence_settles_a_row_written_unknown_or_deferred_and_never_one_with_a_certain_result():
    from campaigns.engagement.provider_events import ProviderEvent, apply_events

    campaign = started_campaign(4)
    rows = rows_of(campaign)
    batch_ledger = claim(rows)
    kinds = ["processed", "deferred", "dropped", "processed"]
    apply_events([ProviderEvent(event_id=f"evt-early-{row.pk}", timestamp=0, delivery_id=row.pk,
                                campaign_id=campaign.pk,
                                evidence=("failed", "SendGrid dropped: Invalid") if kind == "dropped"
                                else ("sent", f"sent: SendGrid reported it {kind}"))
                  for kind, row in zip(kinds, rows)])

    batch_ledger.write([(rows[0].pk, D.UNKNOWN, "smtp", "", "SMTP connection lost after the message was sent"),
                        (rows[1].pk, D.PENDING, "smtp", "", "451 try again"),
                        (rows[2].pk, D.UNKNOWN, "smtp", "", "lost"),
                        (rows[3].pk, D.FAILED, "smtp", "", "550 5.2.2 Mailbox full")])

    settled = {row.pk: (row.status, row.last_error, row.early_evidence) for row in rows_of(campaign)}
    assert settled == {rows[0].pk: (D.SENT, "sent: SendGrid reported it processed", ""),
                       rows[1].pk: (D.SENT, "sent: SendGrid reported it deferred", ""),
                       rows[2].pk: (D.FAILED, "SendGrid dropped: Invalid", ""),
                       rows[3].pk: (D.FAILED, "550 5.2.2 Mailbox full", "")}  # a certain result stands
    assert_counters_match(campaign)


@pytest.mark.django_db
def test_early_evidence_settles_in_flight_rows_when_the_sweep_recovers_an_expired_claim():
    from campaigns.engagement.provider_events import ProviderEvent, apply_events

    campaign = started_campaign(2)
    rows = rows_of(campaign)
    claim(rows, expired=True)
    apply_events([ProviderEvent(event_id="evt-early-one", timestamp=0, delivery_id=rows[0].pk,
                                campaign_id=campaign.pk, evidence=("sent", "sent: SendGrid reported it processed"))])

    report = sweep.sweep()

    assert (report.unknown, report.settled_by_evidence) == (1, 1)
    assert [row.status for row in rows_of(campaign)] == [D.SENT, D.UNKNOWN]
    assert_counters_match(campaign)


@pytest.mark.django_db
@pytest.mark.parametrize("dead, suppressed", [(5, 5), (6, 0)], ids=["20-percent", "over-20-percent"])
def test_dead_addresses_are_suppressed_at_the_batchs_end_unless_more_than_the_breakers_share(dead, suppressed):
    campaign = started_campaign(25, batch_size=25)
    rows = rows_of(campaign)
    batch_ledger = claim(rows)
    batch_ledger.record("smtp", [
        DeliveryResult(row.pk, Outcome.FAILED, error="550 5.1.1 unknown", bounced=True) if i < dead
        else DeliveryResult(row.pk, Outcome.SENT, message_id="m") for i, row in enumerate(rows)])

    reason = batch_ledger.settle_held_refusals(len(rows))

    assert DeliveryLog.objects.filter(campaign=campaign, status=D.FAILED).count() == dead
    assert Suppression.objects.count() == suppressed
    assert (reason is None) == (suppressed == dead)
    assert DeliveryLog.objects.filter(campaign=campaign, suppression_held=True).count() == dead - suppressed
    if reason:
        assert services.confirm_dead_addresses(campaign.pk).startswith(f"{dead} addresses suppressed")
        assert Suppression.objects.count() == dead


@pytest.mark.django_db
def test_a_large_start_refreshes_the_statistics_so_the_log_list_reads_only_its_page(
        monkeypatch, django_capture_on_commit_callbacks):
    # Issue 26: right after a 1M start the campaign's delivery-log list took 150x its time on an empty
    # database: the planner, with statistics from before the start, sorted every row of the campaign.
    monkeypatch.setattr(ledger, "ANALYZE_AFTER_ROWS", 500)
    monkeypatch.setattr(pipeline, "dispatch_batches", lambda *args, **kwargs: 0)  # no tasks: the plan only
    campaigns = []
    for name in ("earlier", "large"):
        campaign = Campaign.objects.create(name=name, subject="Hi", html_body="<p>Hi</p>", status=S.SCHEDULED,
                                           scheduled_at=timezone.now())
        Recipient.objects.bulk_create(Recipient(campaign=campaign, email=f"{name}{i}@example.com")
                                      for i in range(1000))
        campaigns.append(campaign)
    pipeline.start_campaign(campaigns[0].pk)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE campaigns_deliverylog")  # the statistics know only the earlier campaign
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.start_campaign(campaigns[1].pk)
    page = DeliveryLog.objects.filter(campaign=campaigns[1]).select_related("campaign").order_by("-id")[:50]
    plan = page.explain()
    assert "Sort" not in plan and "Backward" in plan, plan
