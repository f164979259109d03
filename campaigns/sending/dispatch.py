"""Queueing the sending tasks, always after the transaction that made them due commits: a campaign's
start, and its batches (the next SEND_BATCHES_AHEAD of them, or named ones).

Below the pipeline, routing, the sweep, the services and A/B tests, which all queue batches; it
imports only the models' tables and Celery.
"""

from celery import current_app
from django.conf import settings
from django.db import connection, transaction

SEND_BATCH_TASK = "campaigns.tasks.senders.send_batch"
START_TASK = "campaigns.tasks.scheduler.start_campaign"


def enqueue_start(campaign_id, eta=None):
    transaction.on_commit(lambda: current_app.send_task(START_TASK, args=[campaign_id], eta=eta))


def dispatch_batches(campaign_id, batch_numbers, countdown=None):
    numbers = sorted(set(batch_numbers))

    def send():
        for number in numbers:
            current_app.send_task(SEND_BATCH_TASK, args=[campaign_id, number], countdown=countdown)

    if numbers:
        transaction.on_commit(send)
    return len(numbers)


# The campaign's next batches to send: those already queued first (their task may be lost: a Redis
# restart, a pause that consumed it), then the waiting ones in order; all become queued.
QUEUE_BATCHES = """
WITH picked AS (
    SELECT id FROM campaigns_sendbatch
    WHERE campaign_id = %(campaign_id)s AND status IN ('queued', 'waiting')
    ORDER BY status = 'queued' DESC, number LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE campaigns_sendbatch AS b SET status = 'queued', updated_at = now()
FROM picked WHERE b.id = picked.id
RETURNING b.number
"""


def queue_batches(campaign_id, limit=None):
    """Queue (and dispatch after commit) up to LIMIT (SEND_BATCHES_AHEAD) of the campaign's next
    batches; returns how many. Resume and the sweep's stall recovery use it."""
    with connection.cursor() as cursor:
        cursor.execute(QUEUE_BATCHES, {"campaign_id": campaign_id, "limit": limit or settings.SEND_BATCHES_AHEAD})
        numbers = [row[0] for row in cursor.fetchall()]
    return dispatch_batches(campaign_id, numbers)
