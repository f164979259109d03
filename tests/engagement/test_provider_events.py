"""campaigns/engagement/provider_events.py against PostgreSQL: concurrent requests whose events overlap (a provider's
retry arriving while the first delivery is still being applied) wait for each other, never deadlock."""

import threading
import time

import psycopg
import pytest
from django.db import connection, connections

from campaigns.engagement import provider_events
from campaigns.engagement.provider_events import ProviderEvent


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
