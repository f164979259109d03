"""The sending pipeline end to end: real worker processes, real Redis and PostgreSQL, local providers."""

import bisect
import collections
import signal
import time

import pytest
from django.conf import settings
from django.utils import timezone

from campaigns import services
from campaigns.models import Campaign, DeliveryLog, Recipient, SendBatch
from campaigns.sending import dispatch, pipeline, sweep
from campaigns.sending.ledger import check_counters
from tests.support.factories import CampaignFactory, RecipientFactory, SuppressionFactory
from tests.support.redis_restart import can_restart, restart_redis

D = DeliveryLog.Status
S = Campaign.Status
pytestmark = pytest.mark.slow


def make_campaign(n, suppressed=0, **fields):
    campaign = CampaignFactory(**fields)
    recipients = RecipientFactory.build_batch(n, campaign=campaign)
    for i, recipient in enumerate(recipients):
        recipient.email = f"r{i:05d}@example.com"
        recipient.first_name = f"First{i}"
        recipient.data = {"city": f"City{i}"}
    Recipient.objects.bulk_create(recipients)
    for recipient in recipients[:suppressed]:
        SuppressionFactory(email=recipient.email)
    return campaign


def wait_for(predicate, timeout=120, every=0.25, on_tick=None):
    """Poll PREDICATE until it holds (a bounded wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if on_tick:
            on_tick()
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


def status_of(campaign):
    campaign.refresh_from_db()
    return campaign.status


def wait_until_finished(campaign, timeout=120, sweeping=False):
    wait_for(lambda: status_of(campaign) in (S.COMPLETED, S.FAILED, S.CANCELLED), timeout=timeout,
             on_tick=sweep.sweep if sweeping else None, every=0.5 if sweeping else 0.25)
    return campaign


def batches_sending(campaign):
    """The campaign's batches under a live (or not yet recovered) claim: what is being sent now."""
    return SendBatch.objects.filter(campaign=campaign, status=SendBatch.Status.SENDING)


def rows_being_sent(campaign):
    """The pending rows of the batches being sent (a row stays pending until its result)."""
    numbers = batches_sending(campaign).values("number")
    return DeliveryLog.objects.filter(campaign=campaign, status=D.PENDING, batch_number__in=numbers)


def in_flight_rows(campaign):
    """The rows whose provider call began and whose result is not written (what a crash makes unknown)."""
    ids = [pk for ids in batches_sending(campaign).values_list("in_flight", flat=True) for pk in ids]
    return DeliveryLog.objects.filter(campaign=campaign, status=D.PENDING, pk__in=ids)


def statuses(campaign):
    return collections.Counter(DeliveryLog.objects.filter(campaign=campaign).values_list("status", flat=True))


def sink_addresses(sink):
    return collections.Counter(m["X-Sink-Rcpt-To"] for m in sink.messages())


def assert_exactly_once(campaign, delivered):
    """Every recipient is terminal, nobody got two messages, and every `sent` row was delivered once."""
    logs = DeliveryLog.objects.filter(campaign=campaign)
    assert logs.count() == campaign.recipients.count()
    assert not logs.filter(status=D.PENDING).exists() and not batches_sending(campaign).exists()
    assert max(delivered.values(), default=0) <= 1, [a for a, n in delivered.items() if n > 1][:5]
    sent = set(logs.filter(status=D.SENT).values_list("email", flat=True))
    assert sent <= set(delivered)
    never_sent = set(logs.filter(status__in=(D.FAILED, D.SKIPPED)).values_list("email", flat=True))
    assert not never_sent & set(delivered)
    campaign.refresh_from_db()
    counts = statuses(campaign)
    assert (campaign.sent_count, campaign.failed_count, campaign.skipped_count, campaign.unknown_count) == (
        counts[D.SENT], counts[D.FAILED], counts[D.SKIPPED], counts[D.UNKNOWN])
    assert check_counters([campaign.pk]) == []


def assert_unknown_was_in_flight(campaign, sink, batches_in_flight):
    """Every unknown row is an address the SMTP server saw or had in flight (it accepted its RCPT), and
    there are at most SEND_SMTP_CHUNK of them per batch that was in flight."""
    unknown = set(DeliveryLog.objects.filter(campaign=campaign, status=D.UNKNOWN).values_list("email", flat=True))
    assert unknown <= set(sink.accepted_rcpts())
    assert len(unknown) <= settings.SEND_SMTP_CHUNK * batches_in_flight
    return unknown


def test_campaign_over_smtp_reaches_completed_with_one_personalized_message_each(
        start_worker, smtp_sink_server, no_sendgrid):
    campaign = make_campaign(700, suppressed=25)  # four batches of 200 (the last one short)
    start_worker(["scheduler", "senders"], concurrency=2)

    services.send_now(campaign.pk)
    wait_until_finished(campaign)

    assert campaign.status == S.COMPLETED
    assert (campaign.total_recipients, campaign.sent_count, campaign.skipped_count) == (700, 675, 25)
    messages = smtp_sink_server.messages()
    assert len(messages) == 675
    by_address = {m["X-Sink-Rcpt-To"]: m for m in messages}
    sample = by_address["r00634@example.com"]
    assert sample["Subject"] == "News for First634"
    assert "Hello First634" in sample.get_body(("html",)).get_content()
    assert sample["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "r00000@example.com" not in by_address  # suppressed
    assert DeliveryLog.objects.get(email="r00000@example.com").last_error == "suppressed: unsubscribed"
    assert_exactly_once(campaign, sink_addresses(smtp_sink_server))


def test_campaign_over_sendgrid_sends_one_request_per_batch_with_substitutions(
        start_worker, fake_sendgrid, smtp_sink_server):
    campaign = make_campaign(1000, suppressed=10, batch_size=200)
    start_worker(["scheduler", "senders"], concurrency=2)

    services.send_now(campaign.pk)
    wait_until_finished(campaign)

    assert campaign.status == S.COMPLETED and campaign.sent_count == 990
    records = fake_sendgrid.records()
    assert fake_sendgrid.stats()["requests_by_status"] == {"202": 5}
    assert len(records) == 990 and smtp_sink_server.count() == 0
    record = next(r for r in records if r["to"] == ["r00500@example.com"])
    assert record["rendered"]["subject"] == "News for First500"
    assert record["custom_args"]["campaign_id"] == str(campaign.pk)
    log = DeliveryLog.objects.get(email="r00500@example.com")
    assert record["custom_args"]["delivery_id"] == str(log.pk)
    assert log.provider == "sendgrid" and log.provider_message_id == record["message_id"]
    assert_exactly_once(campaign, collections.Counter(r["to"][0] for r in records))


def test_two_schedulers_delivering_the_start_twice_start_the_campaign_once(
        start_worker, smtp_sink_server, no_sendgrid):
    campaign = make_campaign(600)
    start_worker(["scheduler"], concurrency=2, wait=False)
    start_worker(["scheduler"], concurrency=2, wait=False)
    start_worker(["senders"], concurrency=2)

    services.send_now(campaign.pk)
    for _ in range(6):  # the sweep and duplicate deliveries race the ETA task
        dispatch.enqueue_start(campaign.pk)
    wait_until_finished(campaign)

    assert campaign.status == S.COMPLETED
    assert DeliveryLog.objects.filter(campaign=campaign).count() == 600
    assert_exactly_once(campaign, sink_addresses(smtp_sink_server))
    assert smtp_sink_server.count() == 600


def test_killing_a_sender_worker_mid_campaign_loses_and_doubles_nothing(
        start_worker, smtp_sink_server, no_sendgrid, worker_env, settings):
    settings.SWEEP_STALL_SECONDS = 5  # the killed worker's prefetched task is re-dispatched by the sweep
    worker_env.update(SEND_LEASE_SECONDS=12, SMTP_RATE_LIMIT_PER_SEC=400)
    campaign = make_campaign(1600)
    start_worker(["scheduler"], concurrency=1, wait=False)
    doomed = start_worker(["senders"], concurrency=2)

    services.send_now(campaign.pk)
    wait_for(lambda: status_of(campaign) == S.IN_PROGRESS and campaign.sent_count >= 400
             and rows_being_sent(campaign).exists(), every=0.02)
    doomed.kill()
    in_flight = rows_being_sent(campaign).count()
    assert in_flight > 0  # the kill really interrupted batches
    start_worker(["senders"], concurrency=2)
    wait_until_finished(campaign, sweeping=True)

    assert campaign.status == S.COMPLETED
    assert_exactly_once(campaign, sink_addresses(smtp_sink_server))
    assert campaign.sent_count + campaign.unknown_count == 1600
    # Only what was really in flight is unknown: at most one chunk for each of the two batches.
    assert_unknown_was_in_flight(campaign, smtp_sink_server, batches_in_flight=2)
    if campaign.unknown_count:
        unknown = DeliveryLog.objects.filter(campaign=campaign, status=D.UNKNOWN).first()
        assert "not re-sent automatically" in unknown.last_error


@pytest.mark.serial  # restarts the Redis every process of a parallel run uses
def test_redis_restarted_mid_campaign_the_campaign_still_completes(
        start_worker, smtp_sink_server, no_sendgrid, worker_env, settings, restartable_redis):
    settings.SWEEP_STALL_SECONDS = 3
    worker_env.update(SMTP_RATE_LIMIT_PER_SEC=400, SEND_LEASE_SECONDS=15)
    campaign = make_campaign(1200)
    worker = start_worker(["scheduler", "senders"], concurrency=2)

    services.send_now(campaign.pk)
    wait_for(lambda: status_of(campaign) == S.IN_PROGRESS and campaign.sent_count >= 200)
    restartable_redis.restart()  # the queue held in Redis is gone
    wait_until_finished(campaign, sweeping=True, timeout=240)

    assert worker.proc.poll() is None, worker.log_tail(80)  # the same worker sent the rest
    assert campaign.status == S.COMPLETED
    assert_exactly_once(campaign, sink_addresses(smtp_sink_server))
    assert campaign.sent_count + campaign.unknown_count == 1200
    # The limiter's Redis vanished under live batches: they fail and release what never left, and
    # only what was in flight (if anything) is unknown.
    assert_unknown_was_in_flight(campaign, smtp_sink_server, batches_in_flight=2)


@pytest.mark.serial  # takes down the Redis every process of a parallel run uses
def test_a_worker_with_a_task_in_hand_and_a_free_slot_survives_redis_going_down(
        start_worker, smtp_sink_server, no_sendgrid, worker_env, settings, restartable_redis):
    # One slow batch holds one of the two pool processes (its message delivered, not yet acknowledged);
    # the other is free, so the worker is waiting on Redis for its next task when Redis goes. Celery 5.7
    # and kombu 5.7 died there ("Unrecoverable error: AttributeError"): cleaning up the lost connection,
    # the channel's second close tried to put the unacknowledged message back through a transport it
    # had already taken apart.
    settings.SWEEP_STALL_SECONDS = 3
    worker_env.update(SMTP_RATE_LIMIT_PER_SEC=25, SEND_LEASE_SECONDS=5)
    campaign = make_campaign(100, batch_size=100)
    worker = start_worker(["scheduler", "senders"], concurrency=2)

    services.send_now(campaign.pk)
    wait_for(lambda: status_of(campaign) == S.IN_PROGRESS and smtp_sink_server.accepted_rcpts())
    # Down for a moment, as a Redis that crashed and is restarted by its supervisor would be: the worker's
    # cleanup of the lost connection runs while it is still down.
    restartable_redis.restart(down_seconds=2)

    def alive_and_sweeping():
        assert worker.proc.poll() is None, f"the worker exited when Redis went:\n{worker.log_tail(80)}"
        sweep.sweep()
    wait_for(lambda: status_of(campaign) in (S.COMPLETED, S.FAILED, S.CANCELLED), on_tick=alive_and_sweeping,
             every=0.5)

    assert worker.proc.poll() is None and "Unrecoverable error" not in worker.log_tail(10_000)
    assert campaign.status == S.COMPLETED
    assert_exactly_once(campaign, sink_addresses(smtp_sink_server))


@pytest.mark.parametrize("fault", [
    {"mode": "500", "count": 3},
    {"mode": "429", "count": 2, "reset_after": 1},
    {"mode": "401", "count": -1},
], ids=["500-then-recovers", "429-with-reset", "401-falls-back-to-smtp"])
def test_sendgrid_faults_lose_nothing_and_double_nothing(
        start_worker, fake_sendgrid, smtp_sink_server, worker_env, fault):
    worker_env.update(SEND_BACKOFF_SECONDS="0.2")
    campaign = make_campaign(800)
    fake_sendgrid.fail(**fault)
    start_worker(["scheduler", "senders"], concurrency=2)

    services.send_now(campaign.pk)
    wait_until_finished(campaign)

    assert campaign.status == S.COMPLETED and campaign.sent_count == 800
    via_sendgrid = collections.Counter(r["to"][0] for r in fake_sendgrid.records())
    via_smtp = sink_addresses(smtp_sink_server)
    assert_exactly_once(campaign, via_sendgrid + via_smtp)
    if fault["mode"] == "401":
        assert not via_sendgrid and len(via_smtp) == 800
        assert set(DeliveryLog.objects.filter(campaign=campaign).values_list("provider", flat=True)) == {"smtp"}
    else:
        assert len(via_sendgrid) == 800 and not via_smtp


def test_the_rate_limit_holds_across_two_worker_processes(start_worker, smtp_sink_server, no_sendgrid, worker_env):
    rate = 300
    worker_env.update(SMTP_RATE_LIMIT_PER_SEC=rate)
    campaign = make_campaign(1500, batch_size=100)
    start_worker(["scheduler", "senders"], concurrency=2, wait=False)
    start_worker(["senders"], concurrency=2)

    began = time.monotonic()
    services.send_now(campaign.pk)
    wait_until_finished(campaign)
    elapsed = time.monotonic() - began

    assert campaign.status == S.COMPLETED
    # Four sending processes together may not beat the shared bucket: after its initial burst
    # (one second's worth), 1500 messages at 300/s need at least (1500 - 300) / 300 = 4 s.
    assert elapsed >= (1500 - rate) / rate
    assert_exactly_once(campaign, sink_addresses(smtp_sink_server))


def send_and_interrupt(start_worker, worker_env, recipients, sent_before, interrupt):
    """Send a campaign of RECIPIENTS at 300/s, call INTERRUPT (services.pause or .cancel) once SENT_BEFORE
    are sent, and return the campaign when no message is mid-send any more."""
    worker_env.update(SMTP_RATE_LIMIT_PER_SEC=300)
    campaign = make_campaign(recipients, batch_size=100)
    start_worker(["scheduler", "senders"], concurrency=2)

    services.send_now(campaign.pk)
    wait_for(lambda: status_of(campaign) == S.IN_PROGRESS and campaign.sent_count >= sent_before)
    interrupt(campaign.pk)
    wait_for(lambda: not batches_sending(campaign).exists())
    return campaign


def test_pause_stops_at_the_batch_boundary_and_resume_finishes_without_duplicates(
        start_worker, smtp_sink_server, no_sendgrid, worker_env):
    campaign = send_and_interrupt(start_worker, worker_env, 1200, 300, services.pause)
    time.sleep(1.5)  # batches queued behind the pause must not send
    campaign.refresh_from_db()
    paused_at_count = campaign.sent_count
    assert campaign.status == S.PAUSED and paused_at_count < 1200
    assert smtp_sink_server.count() == paused_at_count
    time.sleep(1.5)
    assert smtp_sink_server.count() == paused_at_count  # nothing moves while paused

    services.resume(campaign.pk)
    wait_until_finished(campaign)
    assert campaign.status == S.COMPLETED and campaign.sent_count == 1200
    assert_exactly_once(campaign, sink_addresses(smtp_sink_server))


def test_cancel_marks_every_unsent_recipient_skipped_as_cancelled(
        start_worker, smtp_sink_server, no_sendgrid, worker_env):
    campaign = send_and_interrupt(start_worker, worker_env, 2000, 200, services.cancel)

    campaign.refresh_from_db()
    counts = statuses(campaign)
    assert campaign.status == S.CANCELLED
    assert counts[D.PENDING] == 0 and counts[D.SENT] + counts[D.SKIPPED] == 2000
    assert counts[D.SKIPPED] > 0
    assert set(DeliveryLog.objects.filter(campaign=campaign, status=D.SKIPPED)
               .values_list("last_error", flat=True)) == {"cancelled"}
    assert_exactly_once(campaign, sink_addresses(smtp_sink_server))


@pytest.fixture
def restartable_redis(settings):
    """Restart the test Redis in place (same port, empty), as a crashed and restarted Redis would be."""
    if not can_restart(settings.REDIS_URL):
        pytest.skip("needs the throwaway Redis that `make test` starts")

    class Restarter:
        def restart(self, down_seconds=0):
            restart_redis(settings.REDIS_URL, down_seconds=down_seconds)

    return Restarter()


@pytest.mark.serial  # a 2 s lease: on a loaded machine a renewal can come late
def test_a_slow_live_batch_keeps_its_claim_by_renewing_its_lease(
        start_worker, smtp_sink_server, no_sendgrid, worker_env):
    # Each batch of 100 at 40/s takes about 2.5 s, longer than its 2 s lease: only renewals keep it.
    worker_env.update(SEND_LEASE_SECONDS=2, SMTP_RATE_LIMIT_PER_SEC=40)
    campaign = make_campaign(300, batch_size=100)
    start_worker(["scheduler", "senders"], concurrency=2)
    reports = []

    services.send_now(campaign.pk)
    wait_for(lambda: status_of(campaign) in (S.COMPLETED, S.FAILED), on_tick=lambda: reports.append(sweep.sweep()),
             every=0.3)

    assert campaign.status == S.COMPLETED and campaign.sent_count == 300
    assert sum(r.released + r.unknown for r in reports) == 0  # the sweep never took a live claim
    assert_exactly_once(campaign, sink_addresses(smtp_sink_server))


def test_pacing_holds_the_smtp_rate_in_every_one_second_window(
        start_worker, smtp_sink_server, no_sendgrid, worker_env):
    rate = 20
    worker_env.update(SMTP_RATE_LIMIT_PER_SEC=rate)
    campaign = make_campaign(140, batch_size=20)
    start_worker(["scheduler", "senders"], concurrency=2, wait=False)
    start_worker(["senders"], concurrency=2)

    services.send_now(campaign.pk)
    wait_until_finished(campaign)

    assert campaign.status == S.COMPLETED
    # Measured by the server: when each message arrived. No one-second window holds more than the rate.
    times = smtp_sink_server.receive_times()
    assert len(times) == 140
    assert most_in_any_second(times) <= rate
    assert_exactly_once(campaign, sink_addresses(smtp_sink_server))


def test_pacing_holds_the_sendgrid_rate_in_every_one_second_window_across_workers(
        start_worker, fake_sendgrid, worker_env):
    # Requests of 100 recipients under a 400/s limit, from three sender workers whose requests are
    # held up at random on their way out (as a busy database or network holds them up).
    rate = 400
    worker_env.update(SENDGRID_RATE_LIMIT_PER_SEC=rate)
    campaign = make_campaign(3200, batch_size=100)
    start_worker(["scheduler"], concurrency=1, wait=False)
    for number in range(3):
        start_worker(["senders"], concurrency=2, app_module="tests.support.slow_requests_app", wait=number == 2)

    services.send_now(campaign.pk)
    wait_until_finished(campaign)

    assert campaign.status == S.COMPLETED
    # Measured by the server: when each request arrived, once per recipient it carried.
    times = sorted(record["received_at"] for record in fake_sendgrid.records())
    assert len(times) == 3200
    assert most_in_any_second(times) <= rate
    assert_exactly_once(campaign, collections.Counter(fake_sendgrid.recipients()))


def most_in_any_second(times):
    """The most of TIMES (sorted, epoch seconds) in any sliding window [t, t + 1 s)."""
    return max(bisect.bisect_left(times, start + 1.0) - i for i, start in enumerate(times))


def test_cancel_while_every_recipient_is_deferred_leaves_nothing_pending(
        start_worker, smtp_sink_server, no_sendgrid, worker_env):
    worker_env.update(SMTP_RATE_LIMIT_PER_SEC=40)
    smtp_sink_server.set_faults(defer_rcpt=".")  # 451 for every RCPT: every row is deferred
    campaign = make_campaign(400, batch_size=50)
    start_worker(["scheduler", "senders"], concurrency=2)

    services.send_now(campaign.pk)
    wait_for(lambda: batches_sending(campaign).exists(), every=0.05)
    services.cancel(campaign.pk)  # while batches are in flight, deferring their rows after the cancel
    # A batch in flight may put its deferred rows back for a retry task, which then skips them as cancelled:
    # nothing may stay pending once that has run (a bounded wait: rows left pending fail it).
    wait_for(lambda: not batches_sending(campaign).exists()
             and not DeliveryLog.objects.filter(campaign=campaign, status=D.PENDING).exists())

    counts = statuses(campaign)
    assert counts == {D.SKIPPED: 400}
    assert set(DeliveryLog.objects.filter(campaign=campaign).values_list("last_error", flat=True)) == {"cancelled"}
    assert smtp_sink_server.count() == 0
    assert check_counters([campaign.pk]) == []


def test_sigterm_lets_a_sender_finish_its_batch_before_it_exits(
        start_worker, smtp_sink_server, no_sendgrid, worker_env):
    # A batch of 100 at 40/s takes about 2.5 s; the worker is asked to stop in the middle of one.
    worker_env.update(SMTP_RATE_LIMIT_PER_SEC=40)
    campaign = make_campaign(300, batch_size=100)
    start_worker(["scheduler"], concurrency=1, wait=False)
    sender = start_worker(["senders"], concurrency=1)

    services.send_now(campaign.pk)
    wait_for(lambda: DeliveryLog.objects.filter(campaign=campaign, status=D.SENT).exists(), every=0.05)
    sender.proc.send_signal(signal.SIGTERM)  # what `docker compose stop` sends to the worker
    sender.proc.wait(timeout=60)

    # The batch in flight finished: nothing is left claimed, unknown or half-sent.
    counts = statuses(campaign)
    assert not batches_sending(campaign).exists() and counts[D.UNKNOWN] == 0
    assert counts[D.SENT] >= 100 and counts[D.SENT] % 100 == 0
    assert smtp_sink_server.count() == counts[D.SENT]

    start_worker(["senders"], concurrency=1)
    wait_until_finished(campaign, sweeping=True)
    assert campaign.status == S.COMPLETED and campaign.sent_count == 300
    assert_exactly_once(campaign, sink_addresses(smtp_sink_server))


# --- the chunked start (in-process: the start's chunks run here, batch tasks are only recorded) ---

class Crash(Exception):
    pass


def start_stopping_after(campaign, chunks, monkeypatch):
    """Start CAMPAIGN (scheduled now) and stop it, as a dying worker would, after CHUNKS chunks committed
    (the first with the start itself); returns the batch numbers it queued."""
    queued = []
    monkeypatch.setattr(pipeline, "dispatch_batches", lambda campaign_id, numbers, countdown=None: queued.extend(numbers))
    original, made = pipeline.create_start_chunk, []

    def create_start_chunk(campaign_id, *args, **kwargs):
        if len(made) == chunks:
            raise Crash()
        made.append(campaign_id)
        return original(campaign_id, *args, **kwargs)
    monkeypatch.setattr(pipeline, "create_start_chunk", create_start_chunk)
    Campaign.objects.filter(pk=campaign.pk).update(status=S.SCHEDULED, scheduled_at=timezone.now())
    with pytest.raises(Crash):
        pipeline.start_campaign(campaign.pk)
    monkeypatch.setattr(pipeline, "create_start_chunk", original)
    campaign.refresh_from_db()
    return queued


DIGITS = "1357"


def in_segment(i):
    """Recipient I of make_campaign is in the test's segment: its city ("City{i}") has one of DIGITS."""
    return any(d in str(i) for d in DIGITS)


@pytest.mark.django_db
def test_a_start_stopped_between_chunks_carries_on_from_its_cursor_without_gaps_or_duplicates(settings, monkeypatch):
    settings.START_CHUNK_SIZE = 25
    settings.SEND_BATCHES_AHEAD = 3
    campaign = make_campaign(100, suppressed=4, batch_size=10)
    Campaign.objects.filter(pk=campaign.pk).update(segment={"match": "any", "conditions": [
        {"column": "city", "operator": "contains", "value": d} for d in DIGITS]})
    ids = sorted(campaign.recipients.values_list("pk", flat=True))
    audience = [pk for i, pk in enumerate(ids) if in_segment(i)]
    suppressed = {f"r{i:05d}@example.com" for i in range(4) if in_segment(i)}

    queued = start_stopping_after(campaign, 2, monkeypatch)
    # Two chunks of 25 recipients committed, the cursor after them; their first batches queued at once.
    assert campaign.status == S.IN_PROGRESS and campaign.start_cursor == ids[49]
    rows = DeliveryLog.objects.filter(campaign=campaign)
    assert set(rows.values_list("recipient_id", flat=True)) == set(audience) & set(ids[:50])
    assert queued == [0, 1, 2]  # SEND_BATCHES_AHEAD of them; each that finishes queues the next
    # Every row made so far ends, yet the campaign does not complete: rows are still to be made.
    Campaign.objects.filter(pk=campaign.pk).update(sent_count=rows.filter(status=D.PENDING).update(status=D.SENT))
    SendBatch.objects.filter(campaign=campaign).update(status=SendBatch.Status.DONE)
    assert pipeline.finalize_if_done(campaign.pk) is None
    assert status_of(campaign) == S.IN_PROGRESS

    # The sweep finds the cursor with no start task holding it, and queues the start again.
    enqueued = []
    monkeypatch.setattr(sweep, "enqueue_start", lambda campaign_id, eta=None: enqueued.append(campaign_id))
    assert campaign.pk in sweep.sweep().resumed_starts and enqueued == [campaign.pk]
    assert pipeline.start_campaign(campaign.pk) is False  # carried on, not started again
    campaign.refresh_from_db()
    assert campaign.start_cursor is None and campaign.status == S.IN_PROGRESS
    logs = collections.Counter(rows.values_list("recipient_id", flat=True))
    assert set(logs.values()) == {1} and sorted(logs) == audience
    assert campaign.total_recipients == len(audience)
    assert set(rows.filter(status=D.SKIPPED).values_list("email", flat=True)) == suppressed
    # Each batch holds its own rows: one id range, pending rows only, none twice.
    pending = rows.filter(status=D.PENDING)
    for batch in SendBatch.objects.filter(campaign=campaign).exclude(status=SendBatch.Status.DONE):
        mine = list(pending.filter(batch_number=batch.number))
        assert len(mine) == batch.size <= 10
        assert (batch.first_id, batch.last_id) == (min(r.pk for r in mine), max(r.pk for r in mine))
    assert sum(SendBatch.objects.filter(campaign=campaign).values_list("size", flat=True)) == (
        len(audience) - len(suppressed))
    # The later chunks' batches queued as the first ones ended (the pipeline was empty): 3 at a time.
    assert len(queued) == 6
    assert check_counters([campaign.pk]) == []


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["pause", "cancel"])
def test_pause_and_cancel_during_a_start_hold_for_the_chunks_still_to_come(action, settings, monkeypatch):
    settings.START_CHUNK_SIZE = 20
    campaign = make_campaign(60, batch_size=10)
    start_stopping_after(campaign, 1, monkeypatch)
    getattr(services, action)(campaign.pk)
    queued = []
    monkeypatch.setattr(pipeline, "dispatch_batches", lambda campaign_id, numbers, countdown=None: queued.extend(numbers))
    assert pipeline.start_campaign(campaign.pk) is False
    campaign.refresh_from_db()
    assert campaign.start_cursor is None and campaign.total_recipients == 60
    assert DeliveryLog.objects.filter(campaign=campaign).count() == 60 and not queued
    later = DeliveryLog.objects.filter(campaign=campaign, recipient_id__gt=campaign.recipients.order_by("pk")[19].pk)
    if action == "pause":
        assert set(later.values_list("status", flat=True)) == {D.PENDING}
        assert set(SendBatch.objects.filter(campaign=campaign, number__gte=2).values_list("status", flat=True)) == {
            SendBatch.Status.WAITING}
        monkeypatch.setattr(dispatch, "dispatch_batches", lambda campaign_id, numbers, countdown=None: queued.extend(numbers))
        services.resume(campaign.pk)
        assert sorted(queued) == [0, 1, 2, 3, 4, 5]  # the resume queues the batches the paused start made
    else:
        assert set(later.values_list("status", "last_error")) == {(D.SKIPPED, "cancelled")}
        assert not DeliveryLog.objects.filter(campaign=campaign, status=D.PENDING).exists()
        assert campaign.skipped_count == 60
    assert check_counters([campaign.pk]) == []
