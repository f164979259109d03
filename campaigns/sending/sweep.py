"""The periodic safety net (beat, scheduler queue): nothing is lost when a worker or Redis dies.

1. Due scheduled campaigns are started (ETA tasks are the fast path; this catches any that vanished),
   and campaigns due before the next sweep get an ETA task, so they start on the second. A start that
   stopped between its chunks (its worker died) is carried on from its cursor.
2. Expired claims are recovered, batch by batch: the rows whose provider call began (the batch's
   in-flight set) become unknown, or sent (failed) when the provider's events already said so (early
   evidence, kept on the row); the batch's other rows are sent again (the batch is queued).
3. Rows of cancelled campaigns that went back to pending after the cancel are skipped (never those
   of a batch still sending: it writes them itself).
4. Live campaigns that stopped progressing get their next batches queued again, at most once per
   stall window (SWEEP_STALL_SECONDS), judged by the database's clock.
5. Live campaigns whose A/B test wait is over get their winner sent (campaigns.experiments.ab_tests).
6. Live campaigns whose every recipient is terminal are finalised.
"""

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction

from campaigns.experiments import ab_tests
from campaigns.models import Campaign
from campaigns.sending.dispatch import dispatch_batches, enqueue_start, queue_batches
from campaigns.sending.ledger import RECOVER_EXPIRED_CLAIM, WORKER_LOST, run_prepared
from campaigns.sending.pipeline import START_LOCK, finalize_if_done

logger = logging.getLogger(__name__)
S = Campaign.Status

# Judged by the database's clock, never a worker's.
EXPIRED_CLAIMS = """
SELECT id, campaign_id FROM campaigns_sendbatch WHERE status = 'sending' AND lease_expires_at < now() ORDER BY id
"""

# A cancelled campaign keeps nothing pending: rows a batch or the sweep put back after the cancel.
# A batch still sending writes its own rows (those it defers end skipped); the others are done.
# Campaign, then batch, then rows, then the counter: the lock order of every writer (each CTE that
# writes depends on `campaign`, so none runs before its locks are held).
SKIP_CANCELLED = """
WITH campaign AS (
    SELECT c.id FROM campaigns_campaign c
    WHERE c.status = 'cancelled'
      AND EXISTS (SELECT 1 FROM campaigns_deliverylog d WHERE d.campaign_id = c.id AND d.status = 'pending')
    ORDER BY c.id FOR UPDATE
), batches AS (
    UPDATE campaigns_sendbatch AS b SET status = 'done', updated_at = now()
    FROM campaign c
    WHERE c.id = b.campaign_id AND b.status IN ('waiting', 'queued', 'held')
    RETURNING b.campaign_id
), skipped AS (
    UPDATE campaigns_deliverylog AS d SET status = 'skipped', last_error = 'cancelled', updated_at = now()
    FROM campaign c
    WHERE c.id = d.campaign_id AND d.status = 'pending'
      AND NOT EXISTS (SELECT 1 FROM campaigns_sendbatch b WHERE b.campaign_id = d.campaign_id
                      AND b.number = d.batch_number AND b.status = 'sending')
      AND (SELECT count(*) FROM batches) >= 0
    RETURNING d.campaign_id
), counted AS (
    UPDATE campaigns_campaign AS c SET skipped_count = c.skipped_count + n.count
    FROM (SELECT campaign_id, count(*) FROM skipped GROUP BY campaign_id) AS n
    WHERE c.id = n.campaign_id
)
SELECT campaign_id, count(*) FROM skipped GROUP BY campaign_id
"""

# A live campaign that made no progress for a stall window, claimed for one re-dispatch: the same
# conditional update also starts its next window, so however often (and however many) sweeps run,
# its pending batches are re-dispatched at most once per window. A batch being sent under a live lease
# is progress (its heartbeat renews the lease only while its task runs): a slow, paced batch writes no
# result for minutes, and re-dispatching then would only queue every waiting batch again behind it.
CLAIM_STALLED = """
UPDATE campaigns_campaign AS c SET last_progress_at = now()
WHERE c.status = 'in_progress'
  AND (c.last_progress_at IS NULL OR c.last_progress_at < now() - %(stall)s * interval '1 second')
  AND NOT (c.id = ANY(%(skip)s))
  AND NOT EXISTS (SELECT 1 FROM campaigns_sendbatch AS b
                  WHERE b.campaign_id = c.id AND b.status = 'sending' AND b.lease_expires_at >= now())
RETURNING c.id
"""

# Starts that stopped between chunks (their worker died): a campaign whose start cursor is set while no
# start task holds its start lock (campaigns.sending.pipeline.START_LOCK) at this moment. A live start
# is between two chunks for a moment only; one found there gets a second start task, which waits for
# the lock and carries on with the other (each chunk starts from the cursor the last one committed).
STALLED_STARTS = """
SELECT id FROM (SELECT id FROM campaigns_campaign WHERE start_cursor IS NOT NULL OFFSET 0) AS starting
WHERE pg_try_advisory_xact_lock(%(lock)s, id::int)
"""

DUE_SCHEDULED = """
SELECT id, scheduled_at, scheduled_at > now() FROM campaigns_campaign
WHERE status = 'scheduled' AND scheduled_at <= now() + %(ahead)s * interval '1 second'
"""


@dataclass
class SweepReport:
    started: list = field(default_factory=list)
    resumed_starts: list = field(default_factory=list)
    released: int = 0
    unknown: int = 0
    settled_by_evidence: int = 0  # in flight when the claim expired, but the provider's events had told
    redispatched: dict = field(default_factory=dict)
    finalized: list = field(default_factory=list)
    cancelled_skipped: int = 0
    ab_winners: list = field(default_factory=list)


def sweep():
    report = SweepReport()

    with connection.cursor() as cursor:
        cursor.execute(DUE_SCHEDULED, {"ahead": 2 * settings.SWEEP_INTERVAL_SECONDS})
        due = cursor.fetchall()
    for campaign_id, when, in_future in due:
        with transaction.atomic():
            enqueue_start(campaign_id, eta=when if in_future else None)
        report.started.append(campaign_id)

    with connection.cursor() as cursor:
        cursor.execute(STALLED_STARTS, {"lock": START_LOCK})
        stalled_starts = [row[0] for row in cursor.fetchall()]
    for campaign_id in stalled_starts:
        with transaction.atomic():
            enqueue_start(campaign_id)
        report.resumed_starts.append(campaign_id)

    with connection.cursor() as cursor:
        cursor.execute(EXPIRED_CLAIMS)
        expired = cursor.fetchall()
    for batch_id, campaign_id in expired:
        with transaction.atomic():
            ended = run_prepared(RECOVER_EXPIRED_CLAIM, {"batch": batch_id, "campaign": campaign_id, "status": "queued",
                                                         "reason": WORKER_LOST}).fetchone()
            if ended is None:
                continue  # its worker finished (or renewed) it in the meantime
            number, status, unknown, released, settled = ended
            report.unknown += unknown
            report.released += released
            report.settled_by_evidence += settled
            if status == "queued":
                report.redispatched[campaign_id] = (report.redispatched.get(campaign_id, 0)
                                                    + dispatch_batches(campaign_id, [number]))

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(SKIP_CANCELLED)
            report.cancelled_skipped += sum(count for _, count in cursor.fetchall())

    with connection.cursor() as cursor:
        cursor.execute(CLAIM_STALLED, {"stall": settings.SWEEP_STALL_SECONDS, "skip": list(report.redispatched)})
        stalled = [row[0] for row in cursor.fetchall()]
    for campaign_id in stalled:
        with transaction.atomic():
            count = queue_batches(campaign_id)
        if count:
            report.redispatched[campaign_id] = count

    for campaign_id in ab_tests.due_winners():
        if ab_tests.send_winner(campaign_id):
            report.ab_winners.append(campaign_id)

    for campaign_id in Campaign.objects.filter(status=S.IN_PROGRESS).values_list("id", flat=True):
        if finalize_if_done(campaign_id):
            report.finalized.append(campaign_id)

    if (report.resumed_starts or report.released or report.unknown or report.settled_by_evidence or report.redispatched or report.finalized
            or report.cancelled_skipped):
        logger.warning("Sweep: carried on the starts of %s, released %s rows of expired claims to pending, marked %s unknown, settled %s by the "
                       "provider's early events, re-dispatched %s, finalised %s, skipped %s rows of cancelled "
                       "campaigns", report.resumed_starts, report.released, report.unknown, report.settled_by_evidence,
                       report.redispatched, report.finalized, report.cancelled_skipped)
    return report
