"""Queueing the sending tasks, always after the transaction that made them due commits: a campaign's
start, and its batches (the next `batches_ahead` of them, or named ones).

Below the pipeline, routing, the sweep, the services and A/B tests, which all queue batches; it
imports only the models and Celery.
"""

from celery import current_app
from django.conf import settings
from django.db import connection, transaction

from campaigns.models import Campaign, SendingAccount, campaign_label

SEND_BATCH_TASK = "campaigns.tasks.senders.send_batch"
START_TASK = "campaigns.tasks.scheduler.start_campaign"


def enqueue_start(campaign_id, eta=None):
    label = campaign_label(campaign_id)
    transaction.on_commit(lambda: current_app.send_task(START_TASK, kwargs={"campaign_id": campaign_id}, eta=eta,
                                                        argsrepr=label))


def batch_label(campaign_id, number, waiting="", name=None):
    """What Flower shows as a send_batch's arguments: `campaign 2 «Spring sale», batch 35`, and why it
    was queued again when it waits (`waiting for the rate limit of relay-1 until 12:13:05 UTC`)."""
    return f"{campaign_label(campaign_id, name)}, batch {number}" + (f", {waiting}" if waiting else "")


def dispatch_batches(campaign_id, batch_numbers, countdown=None, waiting=""):
    """Queue the batches' tasks once the transaction commits; WAITING: why they wait COUNTDOWN seconds
    first (shown with the task in Flower)."""
    numbers = sorted(set(batch_numbers))
    name = Campaign.objects.filter(pk=campaign_id).values_list("name", flat=True).first() if numbers else None

    def send():
        for number in numbers:
            current_app.send_task(SEND_BATCH_TASK, kwargs={"campaign_id": campaign_id, "batch_number": number},
                                  countdown=countdown, argsrepr=batch_label(campaign_id, number, waiting, name or ""))

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


def batches_ahead(campaign_id):
    """How many of the campaign's batches are queued at a time (each that finishes queues the next).

    SEND_BATCHES_AHEAD, except through a pool whose every enabled account is paced (a per-second or
    per-minute limit): its batches share that pace, so more of them at once send no faster and
    would only sleep in sender slots, with the other campaigns' batches queued behind them. One
    batch per account then: the other campaigns take their turns in the queue."""
    pool_id = Campaign.objects.filter(pk=campaign_id).values_list("pool_id", flat=True).first()
    if pool_id is not None:
        paces = [bool(per_second or per_minute) for per_second, per_minute in
                 SendingAccount.objects.filter(pools=pool_id, enabled=True).values_list("per_second", "per_minute")]
        if paces and all(paces):
            return max(1, min(settings.SEND_BATCHES_AHEAD, len(paces)))
    return settings.SEND_BATCHES_AHEAD


def queue_batches(campaign_id, limit=None):
    """Queue (and dispatch after commit) up to LIMIT (`batches_ahead`) of the campaign's next
    batches; returns how many. Resume and the sweep's stall recovery use it."""
    with connection.cursor() as cursor:
        cursor.execute(QUEUE_BATCHES, {"campaign_id": campaign_id, "limit": limit or batches_ahead(campaign_id)})
        numbers = [row[0] for row in cursor.fetchall()]
    return dispatch_batches(campaign_id, numbers)
