"""campaigns/engagement/provider_events.py against PostgreSQL: concurrent requests whose events overlap (a provider's
retry arriving while the first delivery is still being applied) wait for each other, never deadlock."""

import collections
import threading
import time

import psycopg
import pytest
from django.db import connection, connections

from campaigns.engagement import provider_events
from campaigns.engagement.provider_events import ProviderEvent
from campaigns.models import Campaign, DeliveryLog
from campaigns.sending import ledger
from tests.sending.test_ledger import claim, rows_of
from tests.test_services import started_campaign

D = DeliveryLog.Status
S = Campaign.Status


def waiting_on_locks():
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = "
                       "current_database()")
        return cursor.fetchone()[0]


def test_two_requests_with_the_same_event_ids_in_opposite_orders_do_not_deadlock(transactional_db):
    a, b, c = (ProviderEvent(event_id=f"evt-{name}", timestamp=time.time()) for name in "abc")
    # A third transaction holds "evt-b", so both requests start, take their first id and wait there:
    # one holding "evt-a", the other "evt-c", each needing the other's next.
    settings = connection.settings_dict
    holder = psycopg.connect(dbname=settings["NAME"], user=settings["USER"], password=settings["PASSWORD"],
                             host=settings["HOST"], port=settings["PORT"])
    holder.execute("INSERT INTO campaigns_webhook_event (event_id) VALUES ('evt-b')")
    errors, reports = [], []

    def apply(events):
        try:
            reports.append(provider_events.apply_events(events))
        except Exception as error:  # a deadlock surfaces as OperationalError in one of them
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=apply, args=(order,)) for order in ([a, b, c], [c, b, a])]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while waiting_on_locks() < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    holder.rollback()  # "evt-b" is free: both go on
    holder.close()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sorted(r.duplicates for r in reports) == [0, 3]  # the second one found all three recorded


@pytest.mark.django_db
def test_an_event_listed_twice_counts_once():
    event = ProviderEvent(event_id="evt-twice", timestamp=time.time())

    report = provider_events.apply_events([event, event], ignored=1)

    assert (report.received, report.duplicates, report.unmatched, report.ignored) == (3, 1, 1, 1)


# --- one lock order with the result writers: campaign, then batch, then rows ---------------------------

def _holder():
    settings = connection.settings_dict
    return psycopg.connect(dbname=settings["NAME"], user=settings["USER"], password=settings["PASSWORD"],
                           host=settings["HOST"], port=settings["PORT"])


def _in_thread(target, errors):
    def run():
        try:
            target()
        except Exception as error:  # a deadlock surfaces as OperationalError in one of them
            errors.append(error)
        finally:
            connections.close_all()
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_for_lock_waiters(count):
    deadline = time.monotonic() + 10
    while waiting_on_locks() < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert waiting_on_locks() >= count


def test_an_event_for_a_row_whose_result_is_being_written_waits_for_the_writer_instead_of_deadlocking(
        transactional_db, clean_broker):
    campaign = started_campaign(2)
    rows = rows_of(campaign)
    writer = claim(rows)
    delivered = ProviderEvent(event_id="evt-delivered", timestamp=time.time(), delivery_id=rows[0].pk,
                              campaign_id=campaign.pk, first="delivered", evidence=("sent", "delivered"))
    # A third transaction holds the campaign's row, so the result writer waits for it first, and the
    # event request behind it: when it lets go, the writer has the campaign and needs the rows.
    holder = _holder()
    holder.execute("SELECT id FROM campaigns_campaign WHERE id = %s FOR UPDATE", [campaign.pk])
    errors = []
    threads = [_in_thread(lambda: writer.write([(rows[0].pk, D.SENT, "sendgrid", "m-1", "")]), errors)]
    _wait_for_lock_waiters(1)
    threads.append(_in_thread(lambda: provider_events.apply_events([delivered]), errors))
    _wait_for_lock_waiters(2)
    holder.rollback()
    holder.close()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    row = DeliveryLog.objects.get(pk=rows[0].pk)
    assert row.status == D.SENT and row.delivered_at is not None
    assert ledger.check_counters([campaign.pk]) == []
    assert Campaign.objects.get(pk=campaign.pk).delivered_count == 1


def test_webhook_batches_and_result_writes_on_one_campaign_never_deadlock_and_keep_counters_equal_to_rows(
        transactional_db, clean_broker):
    campaign = started_campaign(120, batch_size=40)
    rows = rows_of(campaign)
    batches = [rows[i:i + 40] for i in range(0, 120, 40)]
    writers = [claim(batch) for batch in batches]
    errors = []

    def write(ledger_, batch):
        for start in range(0, len(batch), 5):
            ledger_.write([(row.pk, D.SENT, "sendgrid", f"m-{row.pk}", "") for row in batch[start:start + 5]])

    def events(round_, kind):
        # Events for every row of the campaign, in an order of their own: each request touches rows of
        # every batch, while the batches' results are being written.
        shuffled = sorted(rows, key=lambda row: hash((round_, row.pk)))
        for start in range(0, len(shuffled), 30):
            provider_events.apply_events([
                ProviderEvent(event_id=f"evt-{kind}-{round_}-{row.pk}", timestamp=time.time(), delivery_id=row.pk,
                              campaign_id=campaign.pk, first=kind, evidence=("sent", kind))
                for row in shuffled[start:start + 30]])

    threads = [_in_thread(lambda l=l, b=b: write(l, b), errors) for l, b in zip(writers, batches)]
    threads += [_in_thread(lambda r=r, k=k: events(r, k), errors)
                for r, k in enumerate(["delivered", "bounced", "complained"])]
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert ledger.check_counters([campaign.pk]) == []
    campaign.refresh_from_db()
    assert (campaign.sent_count, campaign.delivered_count, campaign.bounced_count) == (120, 120, 120)


# --- early evidence: events that arrive before the result is written ---------------------------------

@pytest.mark.slow
def test_events_that_arrive_before_the_worker_died_settle_its_rows_as_sent_and_resend_unknown_mails_nobody(
        start_worker, fake_sendgrid, smtp_sink_server, worker_env, settings, tmp_path, sendgrid):
    # SendGrid answers 202, then the worker dies before writing the results; the events about those
    # messages arrive while their rows are still pending.
    from campaigns import services
    from campaigns.exceptions import CampaignError
    from campaigns.sending import sweep
    from tests.engagement.conftest import event
    from tests.sending.test_pipeline import (
        assert_exactly_once, make_campaign, statuses, wait_for, wait_until_finished)

    settings.SWEEP_STALL_SECONDS = 2
    worker_env.update(SEND_LEASE_SECONDS=4)
    signal_file = tmp_path / "crash.json"
    campaign = make_campaign(20, batch_size=20)
    start_worker(["scheduler"], concurrency=1, wait=False)
    doomed = start_worker(["senders"], concurrency=1, module="tests.support.crashing_worker", CRASH_AT="before_results",
                          CRASH_SIGNAL_FILE=signal_file)
    services.send_now(campaign.pk)
    wait_for(lambda: signal_file.exists())
    rows = list(DeliveryLog.objects.filter(campaign=campaign).order_by("id"))
    assert {row.status for row in rows} == {D.PENDING}
    kinds = ["processed"] * 8 + ["deferred"] * 4 + ["delivered"] * 8
    response = sendgrid.post([event(kind, row) for kind, row in zip(kinds, rows)])
    assert response.status_code == 200
    doomed.kill()

    start_worker(["senders"], concurrency=1)
    wait_until_finished(campaign, sweeping=True)

    assert campaign.status == S.COMPLETED
    assert dict(statuses(campaign)) == {D.SENT: 20}
    processed = DeliveryLog.objects.get(pk=rows[0].pk)
    assert processed.last_error == "sent: SendGrid reported it processed" and processed.sent_at is not None
    received = collections.Counter(address for record in fake_sendgrid.records() for address in record["to"])
    assert_exactly_once(campaign, received)
    assert set(received) == {row.email for row in rows}
    with pytest.raises(CampaignError, match="no unknown recipients"):
        services.resend_unknown(campaign.pk)
    assert len(fake_sendgrid.records()) == 20  # the one request's: nobody mailed again
    assert not smtp_sink_server.messages()
