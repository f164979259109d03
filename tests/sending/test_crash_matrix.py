"""The crash matrix: a real sender worker process is killed with SIGKILL at each step of a batch, and the
ledger is checked against the provider server's own record.

The worker is started through tests/support/crashing_worker.py, which stops it at the step (a test-only
patch); the test then kills its whole process group, as a crashed machine would. Each case asserts:
nobody was mailed twice; every `unknown` row is an address the server saw or had in flight (SMTP:
accepted a RCPT for; SendGrid: received in a request), and there are at most SEND_SMTP_CHUNK of them
on SMTP, one request's worth on SendGrid; nothing is pending and no batch is sending after recovery; the dead
worker's claim ended within one lease of its death; the counters equal the rows.
"""

import collections
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Max

from campaigns import services
from campaigns.models import Campaign, DeliveryLog
from campaigns.sending import pipeline
from tests.sending.test_pipeline import (
    assert_exactly_once, batches_sending, in_flight_rows, make_campaign, status_of, wait_for, wait_until_finished)

D = DeliveryLog.Status
S = Campaign.Status
pytestmark = pytest.mark.slow

LEASE = 4
CHUNK = 10
BATCH = 20
RECIPIENTS = 60


def db_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def emails(campaign, status):
    return set(DeliveryLog.objects.filter(campaign=campaign, status=status).values_list("email", flat=True))


# Over several SMTP connections a round of them is marked at once (one message in flight on each).
CONNECTIONS = 3

CASES = [
    # (step, provider, environment of the doomed worker; SMTP uses one connection unless it says)
    ("after_claim", "smtp", {}),
    ("rate_limit_wait", "smtp", {"SMTP_RATE_LIMIT_PER_SEC": 5}),
    ("after_call_began", "smtp", {}),
    ("after_call_began", "sendgrid", {}),
    ("mid_data", "smtp", {"CRASH_K": 3}),
    ("request_in_flight", "sendgrid", {}),
    ("before_results", "smtp", {}),
    ("before_results", "sendgrid", {}),
    ("while_writing", "smtp", {}),
    ("while_writing", "sendgrid", {}),
    ("after_call_began", "smtp", {"SEND_SMTP_CONNECTIONS": CONNECTIONS}),
    ("mid_data", "smtp", {"CRASH_K": 5, "SEND_SMTP_CONNECTIONS": CONNECTIONS}),
    ("before_results", "smtp", {"SEND_SMTP_CONNECTIONS": CONNECTIONS}),
]


@pytest.mark.parametrize("step,provider,env", CASES, ids=[
    f"{c[0]}-{c[1]}" + (f"-{c[2]['SEND_SMTP_CONNECTIONS']}-connections" if "SEND_SMTP_CONNECTIONS" in c[2] else "")
    for c in CASES])
def test_a_sender_killed_at_each_step_of_a_batch_mails_nobody_twice_and_bounds_unknown(
        step, provider, env, request, start_worker, smtp_sink_server, worker_env, settings, tmp_path):
    if provider == "sendgrid":
        api = request.getfixturevalue("fake_sendgrid")
    else:
        request.getfixturevalue("no_sendgrid")
        api = None
    settings.SWEEP_STALL_SECONDS = 2  # the dead worker's prefetched tasks are re-dispatched by the sweep
    connections = env.get("SEND_SMTP_CONNECTIONS", 1)
    worker_env.update(SEND_LEASE_SECONDS=LEASE, SEND_SMTP_CHUNK=CHUNK, SEND_SMTP_CONNECTIONS=connections)
    signal_file = tmp_path / "crash.json"
    campaign = make_campaign(RECIPIENTS, batch_size=BATCH)
    start_worker(["scheduler"], concurrency=1, wait=False)
    if step == "request_in_flight":
        api.fail("hang", count=1, hang_seconds=120)
        doomed = start_worker(["senders"], concurrency=1)
    else:
        doomed = start_worker(["senders"], concurrency=1, module="tests.support.crashing_worker", CRASH_AT=step,
                              CRASH_SIGNAL_FILE=signal_file, **env)

    services.send_now(campaign.pk)
    if step == "request_in_flight":
        wait_for(lambda: api.stats()["requests_by_status"].get("hang"))
        stopped = {}
    else:
        stopped = json.loads(wait_for(lambda: signal_file.exists() and signal_file.read_text() or None))
    killed_at = db_now()
    doomed.kill()

    # The dead worker's claim ends within one lease of its death: its heartbeat renewed it at most
    # up to then.
    claim_ends = batches_sending(campaign).aggregate(end=Max("lease_expires_at"))["end"]
    assert claim_ends is not None and claim_ends <= killed_at + timedelta(seconds=LEASE)
    marked_at_kill = set(in_flight_rows(campaign).values_list("email", flat=True))

    start_worker(["senders"], concurrency=2)
    wait_until_finished(campaign, sweeping=True)

    assert campaign.status == S.COMPLETED
    assert not DeliveryLog.objects.filter(campaign=campaign, status=D.PENDING).exists()
    assert not batches_sending(campaign).exists()
    smtp_received = collections.Counter(m["X-Sink-Rcpt-To"] for m in smtp_sink_server.messages())
    api_received = collections.Counter(r["to"][0] for r in api.records()) if api else collections.Counter()
    received = smtp_received + api_received
    assert_exactly_once(campaign, received)  # nobody twice; counters == rows
    unknown = emails(campaign, D.UNKNOWN)
    assert emails(campaign, D.SENT) | unknown == {f"r{i:05d}@example.com" for i in range(RECIPIENTS)}
    # Unknown is exactly what was marked in flight when the worker died, and no more.
    assert unknown == marked_at_kill
    if provider == "smtp":
        in_flight = set(smtp_sink_server.accepted_rcpts()) - set(smtp_received)
        assert unknown <= set(smtp_received) | in_flight  # the server saw it, or had it in flight
        assert len(unknown) <= CHUNK
    else:
        in_flight = set(api.stats()["hung_recipients"])
        if step != "after_call_began":  # (see below)
            assert unknown <= set(api_received) | in_flight
        assert len(unknown) <= BATCH  # the one request
        assert not smtp_received  # nothing fell back to SMTP and went out twice

    if step in ("after_claim", "rate_limit_wait"):
        assert not unknown  # nothing had left: everything went back to pending and was sent once
    elif step == "after_call_began":
        assert unknown == set(stopped["marked"])
        assert not unknown & set(received)  # it had not left, but nobody can prove that
        # SMTP: the first round, one message per connection.
        assert len(unknown) == (connections if provider == "smtp" else BATCH)
    elif step == "mid_data" and connections == 1:
        assert len(unknown) == 3 and len(unknown & set(received)) == 2  # two accepted, one cut off in DATA
    elif step == "mid_data":
        # Two rounds of three marked; the second cut off in the DATA of its second message: the
        # first round and the round's first message accepted, its third RCPT accepted, no content.
        assert len(unknown) == 6 and len(unknown & set(received)) == 4
    elif step == "request_in_flight":
        assert unknown == in_flight and len(unknown) == BATCH
    else:  # accepted by the provider, results not (or not durably) written
        assert unknown == set(stopped.get("accepted") or stopped.get("writing"))
        assert unknown <= set(received)
        assert len(unknown) == (CHUNK if provider == "smtp" else BATCH)


START_CHUNK = 40
START_RECIPIENTS = 180  # 5 chunks of 40 (the last of 20), batches of 20


def test_a_scheduler_killed_between_the_chunks_of_a_start_resumes_it_without_gaps_or_duplicates(
        fake_sendgrid, start_worker, smtp_sink_server, worker_env, settings, tmp_path):
    """The start creates its delivery rows in chunks; the scheduler worker dies after the second chunk
    committed (the first batches are already being sent). The sweep finds the start's cursor with no start
    task holding it and queues the start again, which carries on from the cursor: every recipient ends
    with exactly one delivery log, and the server received each exactly once."""
    api = fake_sendgrid
    settings.START_CHUNK_SIZE = START_CHUNK
    worker_env.update(START_CHUNK_SIZE=START_CHUNK)
    signal_file = tmp_path / "crash.json"
    campaign = make_campaign(START_RECIPIENTS, suppressed=3, batch_size=BATCH)
    doomed = start_worker(["scheduler"], concurrency=1, module="tests.support.crashing_worker", wait=False,
                          CRASH_AT="between_start_chunks", CRASH_SIGNAL_FILE=signal_file)
    start_worker(["senders"], concurrency=2)

    services.send_now(campaign.pk)
    stopped = json.loads(wait_for(lambda: signal_file.exists() and signal_file.read_text() or None))
    assert stopped["rows"] == 2 * START_CHUNK
    campaign.refresh_from_db()
    assert campaign.start_cursor == stopped["cursor"]
    doomed.kill()
    start_worker(["scheduler"], concurrency=1, wait=False)  # boots while the first batches end
    # Its first batches go out and end, but the campaign does not complete with rows still to create.
    wait_for(lambda: not DeliveryLog.objects.filter(campaign=campaign, status=D.PENDING).exists())
    pipeline.finalize_if_done(campaign.pk)
    assert status_of(campaign) == S.IN_PROGRESS

    wait_until_finished(campaign, sweeping=True)

    assert campaign.status == S.COMPLETED and campaign.start_cursor is None
    logs = collections.Counter(DeliveryLog.objects.filter(campaign=campaign).values_list("recipient_id", flat=True))
    assert sorted(logs) == sorted(campaign.recipients.values_list("pk", flat=True))
    assert set(logs.values()) == {1}
    assert campaign.total_recipients == START_RECIPIENTS and campaign.skipped_count == 3
    received = (collections.Counter(m["X-Sink-Rcpt-To"] for m in smtp_sink_server.messages())
                + collections.Counter(r["to"][0] for r in api.records()))
    assert_exactly_once(campaign, received)
    assert set(received) == emails(campaign, D.SENT)
    assert len(received) == START_RECIPIENTS - 3 and set(received.values()) == {1}
