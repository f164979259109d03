"""The periodic safety net (beat, scheduler queue): nothing is lost when a worker or Redis dies.

1. Due scheduled campaigns are started (ETA tasks are the fast path; this catches any that vanished),
   and campaigns due before the next sweep get an ETA task, so they start on the second.
2. Expired claims are recovered: back to pending when no provider call began, else unknown.
3. Rows of cancelled campaigns that went back to pending after the cancel are skipped.
4. Live campaigns that stopped progressing get their pending batches dispatched again, at most once
   per stall window (SWEEP_STALL_SECONDS), judged by the database's clock.
5. Live campaigns whose every recipient is terminal are finalised.
"""

import logging
from dataclasses import dataclass, field
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F

from campaigns.models import Campaign, DeliveryLog
from campaigns.sending.pipeline import dispatch_batches, enqueue_start, finalize_if_done, pending_batch_numbers

logger = logging.getLogger(__name__)
S = Campaign.Status

# Judged by the database's clock, never a worker's.
RECOVER_EXPIRED_CLAIMS = """
UPDATE campaigns_deliverylog
SET status = CASE WHEN call_started_at IS NULL THEN 'pending' ELSE 'unknown' END,
    last_error = CASE WHEN call_started_at IS NULL THEN last_error
                      ELSE 'claim expired after the provider call began (worker lost); not re-sent automatically' END,
    claim_token = NULL, lease_expires_at = NULL, updated_at = now()
WHERE status = 'sending' AND lease_expires_at < now()
RETURNING campaign_id, status, batch_number
"""

# A cancelled campaign keeps nothing pending: rows a batch or the sweep put back after the cancel.
SKIP_CANCELLED = """
WITH skipped AS (
    UPDATE campaigns_deliverylog AS d SET status = 'skipped', last_error = 'cancelled', updated_at = now()
    FROM campaigns_campaign c
    WHERE c.id = d.campaign_id AND c.status = 'cancelled' AND d.status = 'pending'
    RETURNING d.campaign_id
)
SELECT campaign_id, count(*) FROM skipped GROUP BY campaign_id
"""

# A live campaign that made no progress for a stall window, claimed for one re-dispatch: the same
# conditional update also starts its next window, so however often (and however many) sweeps run,
# its pending batches are re-dispatched at most once per window.
CLAIM_STALLED = """
UPDATE campaigns_campaign SET last_progress_at = now()
WHERE status = 'in_progress'
  AND (last_progress_at IS NULL OR last_progress_at < now() - %(stall)s * interval '1 second')
  AND NOT (id = ANY(%(skip)s))
RETURNING id
"""

DUE_SCHEDULED = """
SELECT id, scheduled_at, scheduled_at > now() FROM campaigns_campaign
WHERE status = 'scheduled' AND scheduled_at <= now() + %(ahead)s * interval '1 second'
"""


@dataclass
class SweepReport:
    started: list = field(default_factory=list)
    released: int = 0
    unknown: int = 0
    redispatched: dict = field(default_factory=dict)
    finalized: list = field(default_factory=list)
    cancelled_skipped: int = 0


def sweep():
    report = SweepReport()

    with connection.cursor() as cursor:
        cursor.execute(DUE_SCHEDULED, {"ahead": 2 * settings.SWEEP_INTERVAL_SECONDS})
        due = cursor.fetchall()
    for campaign_id, when, in_future in due:
        with transaction.atomic():
            enqueue_start(campaign_id, eta=when if in_future else None)
        report.started.append(campaign_id)

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(RECOVER_EXPIRED_CLAIMS)
            recovered = cursor.fetchall()
        unknown_by_campaign, batches_by_campaign = {}, {}
        for campaign_id, status, batch_number in recovered:
            if status == DeliveryLog.Status.UNKNOWN:
                unknown_by_campaign[campaign_id] = unknown_by_campaign.get(campaign_id, 0) + 1
            else:
                batches_by_campaign.setdefault(campaign_id, set()).add(batch_number)
        for campaign_id, count in unknown_by_campaign.items():
            Campaign.objects.filter(pk=campaign_id).update(unknown_count=F("unknown_count") + count)
        report.unknown = sum(unknown_by_campaign.values())
        report.released = len(recovered) - report.unknown
        live = set(Campaign.objects.filter(pk__in=batches_by_campaign, status=S.IN_PROGRESS).values_list("id", flat=True))
        for campaign_id in live:
            report.redispatched[campaign_id] = dispatch_batches(campaign_id, batches_by_campaign[campaign_id])

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(SKIP_CANCELLED)
            for campaign_id, count in cursor.fetchall():
                Campaign.objects.filter(pk=campaign_id).update(skipped_count=F("skipped_count") + count)
                report.cancelled_skipped += count

    with connection.cursor() as cursor:
        cursor.execute(CLAIM_STALLED, {"stall": settings.SWEEP_STALL_SECONDS, "skip": list(report.redispatched)})
        stalled = [row[0] for row in cursor.fetchall()]
    for campaign_id in stalled:
        with transaction.atomic():
            count = dispatch_batches(campaign_id, pending_batch_numbers(campaign_id))
        if count:
            report.redispatched[campaign_id] = count

    for campaign_id in Campaign.objects.filter(status=S.IN_PROGRESS).values_list("id", flat=True):
        if finalize_if_done(campaign_id):
            report.finalized.append(campaign_id)

    if report.released or report.unknown or report.redispatched or report.finalized or report.cancelled_skipped:
        logger.warning("Sweep: released %s expired claims to pending, marked %s unknown, re-dispatched %s, "
                       "finalised %s, skipped %s rows of cancelled campaigns", report.released, report.unknown,
                       report.redispatched, report.finalized, report.cancelled_skipped)
    return report
