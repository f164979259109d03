"""The sending pipeline: start a campaign, send one batch, finalise. Each step keeps the sending
promises of docs/design.md, numbered as there:

1. A campaign starts once: the start is a conditional UPDATE on status (campaigns.states).
2. Each recipient gets exactly one DeliveryLog, and each batch one SendBatch: the start creates both
   in chunks of START_CHUNK_SIZE recipients (in id order), one INSERT ... SELECT ... ON CONFLICT DO
   NOTHING per chunk, each chunk in its own transaction with the campaign's start cursor (the last
   recipient id done), so the first batches go out while the rest are created and a crashed start
   resumes after the cursor.
3. Nobody is mailed twice automatically: a batch claims its SendBatch row with a short lease that it
   keeps renewing, and the providers record on that row which messages' call began, at the last
   moment before bytes leave; results are written only while the claim is still its own, each
   delivery row once (campaigns.sending.ledger).
4. A million recipients start in seconds: the start queues SEND_BATCHES_AHEAD batch tasks (one per
   account through a pool of paced accounts: dispatch.batches_ahead), and each batch that finishes
   queues the next waiting one.
5. Work is enqueued only after its transaction commits.
6. Pause and cancel take effect at the batch boundary: the claim holds the campaign's row (FOR SHARE)
   and only claims while it is in progress.
"""

import json
import logging
import math
import random
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, Max, OuterRef, Q
from django.db.models.functions import Now
from django.utils import timezone

from campaigns import states
from campaigns.audience.segments import compile_segment
from campaigns.exceptions import (
    IllegalTransition,
    MergeTagError,
    ProviderError,
    ProviderRefused,
    QuotaExhausted,
    RateWaitTooLong,
)
from campaigns.experiments import ab_tests
from campaigns.message import click_tracking, signed_links
from campaigns.message.rendering import compile_campaign, recipient_context
from campaigns.models import MAX_BATCH_SIZE, Campaign, DeliveryLog, SendBatch
from campaigns.security.logsafe import for_log
from campaigns.sending import domain_groups, ledger, ratelimit, routing
from campaigns.sending.dispatch import batches_ahead, dispatch_batches, queue_batches
from campaigns.sending.ledger import OWNED, BatchLedger, Heartbeat, refresh_statistics, run_prepared
from campaigns.sending.providers.base import Batch, DeliveryResult, Outcome, OutgoingMessage

logger = logging.getLogger(__name__)
D = DeliveryLog.Status
B = SendBatch.Status


def unfinished_batch_numbers(campaign_id):
    """Numbers of the campaign's batches that still have rows to send (waiting, queued or sending)."""
    return sorted(SendBatch.objects.filter(campaign_id=campaign_id).exclude(status=B.DONE)
                  .values_list("number", flat=True))


# --- start --------------------------------------------------------------------------------------

def batch_size(campaign):
    """Rows per batch: the campaign's setting, capped here too because validators do not run on every save."""
    return min(campaign.batch_size, MAX_BATCH_SIZE)


def batch_number_sql(window):
    """The SQL numbering rows into batches: in WINDOW's order, row n goes to batch first_batch + (n - 1) / batch_size."""
    return f"%(first_batch)s + (row_number() OVER ({window}) - 1) / %(batch_size)s"


# The batches of ROWS (id, status, batch_number), in the same statement: the first `batches_ahead`
# are queued, the rest wait for a finishing batch to queue them.
CREATE_BATCHES = """
batches AS (
    INSERT INTO campaigns_sendbatch
        (campaign_id, number, status, first_id, last_id, size, attempts, in_flight, variant_id, updated_at)
    SELECT %(campaign_id)s, batch_number,
           CASE WHEN batch_number < %(first_batch)s + %(ahead)s THEN 'queued' ELSE 'waiting' END,
           min(id), max(id), count(*), 0, '{{}}', {variant}, now()
    FROM {rows} WHERE status = 'pending' GROUP BY batch_number
    RETURNING number, status
)"""

CREATE_DELIVERY_LOGS = f"""
WITH inserted AS (
    INSERT INTO campaigns_deliverylog
        (campaign_id, recipient_id, email, status, batch_number, last_error, provider, provider_message_id,
         attempts, updated_at)
    SELECT r.campaign_id, r.id, r.email,
           CASE WHEN s.id IS NULL AND %(live)s THEN 'pending' ELSE 'skipped' END,
           {batch_number_sql("PARTITION BY s.id IS NULL ORDER BY r.id")},
           CASE WHEN s.id IS NOT NULL THEN 'suppressed: ' || s.reason WHEN %(live)s THEN '' ELSE 'cancelled' END,
           '', '', 0, now()
    FROM campaigns_recipient r
    LEFT JOIN campaigns_suppression s ON s.email = lower(r.email)
    WHERE r.campaign_id = %(campaign_id)s AND r.id > %(after)s AND r.id <= %(upto)s AND /* segment */ TRUE
    ON CONFLICT (recipient_id) DO NOTHING
    RETURNING id, status, batch_number
), {CREATE_BATCHES.format(rows="inserted", variant="%(winner)s::bigint")}
SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM inserted WHERE status = 'skipped'),
       (SELECT count(*) FROM batches),
       coalesce((SELECT array_agg(number ORDER BY number) FROM batches WHERE status = 'queued'), '{{}}')
"""

# An A/B test's rows are sent again with the variant they got (the rest: the winner), one variant per
# batch (campaigns.experiments.ab_tests); any other campaign's rows have no variant and form one group.
REQUEUE_IN_BATCHES = f"""
WITH grouped AS (
    SELECT id, coalesce(variant_id, %(winner)s::bigint) AS variant_id,
           (row_number() OVER (PARTITION BY coalesce(variant_id, %(winner)s::bigint) ORDER BY id) - 1)
               / %(batch_size)s AS chunk
    FROM campaigns_deliverylog WHERE campaign_id = %(campaign_id)s AND status = %(status)s
), numbered AS (
    SELECT id, variant_id, %(first_batch)s - 1 + dense_rank() OVER (ORDER BY variant_id NULLS FIRST, chunk)
               AS batch_number
    FROM grouped
), requeued AS (
    UPDATE campaigns_deliverylog AS d
    SET status = 'pending', attempts = 0, updated_at = now(), batch_number = n.batch_number
    FROM numbered AS n
    WHERE d.id = n.id AND d.status = %(status)s
    RETURNING d.id, d.status, d.batch_number, n.variant_id
), {CREATE_BATCHES.format(rows="requeued", variant="max(variant_id)")}
SELECT (SELECT count(*) FROM requeued), coalesce((SELECT array_agg(number ORDER BY number) FROM batches
                                                  WHERE status = 'queued'), '{{}}')
"""


# An A/B test's start (campaigns.experiments.ab_tests), one chunk of recipients at a time: the same rows and
# batches, with the chunk's sendable rows in a random order (md5 of a per-campaign seed and the recipient's
# id). The first of them, enough to bring the test rows of every chunk so far to the test share of the
# sendable rows so far (PRIOR_SENDABLE and PRIOR_TEST: the earlier chunks'), are dealt round-robin to the
# variants, carrying on from the earlier chunks' deal (so the variants' sizes differ by at most one): each
# chunk gives the test its share of the chunk, a stratified random sample of the whole audience. Each batch
# holds one variant's rows: the test batches interleave the variants (A0, B0, A1, B1 ...), the rest
# follow, held until the winner is chosen. The rows are inserted in batch order, so each batch's ids
# are one range.
CREATE_AB_DELIVERY_LOGS = """
WITH candidates AS (
    SELECT r.campaign_id, r.id AS recipient_id, r.email, s.id IS NULL AND %(live)s AS sendable, s.reason,
           row_number() OVER (PARTITION BY s.id IS NULL ORDER BY md5(%(seed)s || r.id::text), r.id) AS n,
           count(*) OVER (PARTITION BY s.id IS NULL) AS total
    FROM campaigns_recipient r
    LEFT JOIN campaigns_suppression s ON s.email = lower(r.email)
    WHERE r.campaign_id = %(campaign_id)s AND r.id > %(after)s AND r.id <= %(upto)s AND /* segment */ TRUE
), grouped AS (
    SELECT *, CASE WHEN sendable AND n <= (%(prior_sendable)s + total) * %(percent)s / 100 - %(prior_test)s
                   THEN ((%(prior_test)s + n - 1) %% %(variants)s)::int
                   ELSE %(variants)s END AS grp
    FROM candidates
), chunked AS (
    SELECT *, (row_number() OVER (PARTITION BY sendable, grp ORDER BY n) - 1) / %(batch_size)s AS chunk
    FROM grouped
), placed AS (
    SELECT *, %(first_batch)s - 1 + dense_rank() OVER (PARTITION BY sendable ORDER BY grp = %(variants)s, chunk, grp)
              AS batch_number
    FROM chunked
), inserted AS (
    INSERT INTO campaigns_deliverylog
        (campaign_id, recipient_id, email, status, batch_number, variant_id, last_error, provider,
         provider_message_id, attempts, updated_at)
    SELECT campaign_id, recipient_id, email, CASE WHEN sendable THEN 'pending' ELSE 'skipped' END, batch_number,
           CASE WHEN sendable AND grp < %(variants)s THEN (%(variant_ids)s::bigint[])[grp + 1] END,
           CASE WHEN sendable THEN '' WHEN reason IS NOT NULL THEN 'suppressed: ' || reason ELSE 'cancelled' END,
           '', '', 0, now()
    FROM placed ORDER BY sendable DESC, batch_number, n
    ON CONFLICT (recipient_id) DO NOTHING
    RETURNING id, status, batch_number, variant_id
), batches AS (
    INSERT INTO campaigns_sendbatch
        (campaign_id, number, status, first_id, last_id, size, attempts, in_flight, variant_id, updated_at)
    SELECT %(campaign_id)s, batch_number,
           CASE WHEN max(variant_id) IS NULL THEN 'held'
                WHEN batch_number < %(first_batch)s + %(ahead)s THEN 'queued' ELSE 'waiting' END,
           min(id), max(id), count(*), 0, '{}', max(variant_id), now()
    FROM inserted WHERE status = 'pending' GROUP BY batch_number
    RETURNING number, status
)
SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM inserted WHERE status = 'skipped'),
       (SELECT count(*) FROM batches),
       coalesce((SELECT array_agg(number ORDER BY number) FROM batches WHERE status = 'queued'), '{}')
"""


LAST_ID = 2 ** 63 - 1


def create_delivery_logs(campaign_id, batch_size, first_batch=0, segment=None, ab=None, after=0, upto=LAST_ID,
                         ahead=None, live=True, winner=None, prior=(0, 0)):
    """One DeliveryLog per recipient that has none yet, of the recipients whose id is in (AFTER, UPTO]
    (of SEGMENT's recipients only, campaigns.audience.segments), and their batches numbered from
    FIRST_BATCH, the first AHEAD of them queued (default `batches_ahead`), in one statement (split for an
    A/B test with AB, an AbSplit, after PRIOR: the earlier chunks' sendable and test rows; with WINNER, the
    batches are the winner's). Not LIVE (a cancelled campaign): every row is skipped. Returns (created,
    skipped, batches, numbers of the batches queued)."""
    segment_sql, segment_params = compile_segment(segment)
    statement = CREATE_DELIVERY_LOGS if ab is None else CREATE_AB_DELIVERY_LOGS
    params = {**segment_params, "campaign_id": campaign_id, "batch_size": batch_size, "first_batch": first_batch,
              "ahead": batches_ahead(campaign_id) if ahead is None else ahead, "after": after, "upto": upto,
              "live": live, "winner": winner}
    if ab is not None:
        params.update(percent=ab.percent, variants=len(ab.variant_ids), variant_ids=list(ab.variant_ids),
                      seed=ab.seed, prior_sendable=prior[0], prior_test=prior[1])
    with connection.cursor() as cursor:
        # Numbering a chunk's rows into batches sorts them: in memory, not in temporary files (this
        # transaction only).
        cursor.execute("SET LOCAL work_mem = '128MB'")
        cursor.execute(statement.replace("/* segment */ TRUE", segment_sql), params)
        return cursor.fetchone()


def next_batch_number(campaign_id):
    """A batch number no row or batch of the campaign has used (rows only ever move to higher ones)."""
    rows = DeliveryLog.objects.filter(campaign_id=campaign_id).aggregate(m=Max("batch_number"))["m"]
    batches = SendBatch.objects.filter(campaign_id=campaign_id).aggregate(m=Max("number"))["m"]
    return max(-1 if rows is None else rows, -1 if batches is None else batches) + 1


def requeue_in_batches(campaign_id, status, first_batch, batch_size, queue=True):
    """Every STATUS row of the campaign back to pending, in fresh batches from FIRST_BATCH; with QUEUE
    the first `batches_ahead` are queued. Returns (rows, numbers of the batches queued)."""
    with connection.cursor() as cursor:
        winner = Campaign.objects.filter(pk=campaign_id).values_list("ab_winner_id", flat=True).first()
        cursor.execute(REQUEUE_IN_BATCHES, {"campaign_id": campaign_id, "status": status, "first_batch": first_batch,
                                            "batch_size": batch_size, "winner": winner,
                                            "ahead": batches_ahead(campaign_id) if queue else 0})
        return cursor.fetchone()


def start_campaign(campaign_id):
    """Start a due scheduled campaign exactly once: its delivery logs and batches, chunk by chunk
    (create_start_chunk), the first chunk in the start's own transaction, its first batches queued as
    soon as it commits; then the other chunks, each committed on its own.

    Safe to call any number of times (ETA task, beat sweep, redelivery): only the first call that
    finds the campaign scheduled and due starts it; a later call finds a start that did not finish
    (its worker died between chunks) and carries it on from its cursor. Returns whether it started it.
    """
    now = timezone.now()
    started = False
    with transaction.atomic():
        try:
            states.start(campaign_id, due_by=now)
            started = True
        except IllegalTransition as refused:
            if refused.actual_status == Campaign.Status.SCHEDULED:
                logger.debug("Campaign %s is not due yet", campaign_id)
                return False
            if not Campaign.objects.filter(pk=campaign_id, start_cursor__isnull=False).exists():
                logger.info("Campaign %s not started: it is %s", campaign_id, refused.actual_status)
                return False
            logger.info("Campaign %s: carrying on its start, which stopped between chunks", campaign_id)
        if started:
            Campaign.objects.filter(pk=campaign_id).update(
                start_cursor=0, total_recipients=0, suppressed_at_start=0, last_progress_at=Now())
            campaign = Campaign.objects.get(pk=campaign_id)
            if ab_tests.split_for(campaign) is not None:
                ab_tests.start_wait(campaign)
            # The first chunk only as big as the batches queued at once need: it commits sooner, and
            # the next chunks are made while those batches are sent.
            more = create_start_chunk(campaign_id, min(settings.START_CHUNK_SIZE,
                                                       batch_size(campaign) * batches_ahead(campaign_id)))
    if not started:
        more = True
    while more:
        more = create_start_chunk(campaign_id)
    return started


# The chunk's last recipient id and how many recipients it has (fewer than the chunk size: the last).
CHUNK_BOUND = """
SELECT max(id), count(*) FROM (
    SELECT id FROM campaigns_recipient WHERE campaign_id = %(campaign_id)s AND id > %(after)s ORDER BY id LIMIT %(size)s
) AS chunk
"""

# The batches so far: the next number, how many are queued or sending, and the rows in them (all, and
# an A/B test's test rows: before the winner, only test batches have a variant).
BATCHES_SO_FAR = """
SELECT coalesce(max(number) + 1, 0), count(*) FILTER (WHERE status IN ('queued', 'sending')),
       coalesce(sum(size), 0), coalesce(sum(size) FILTER (WHERE variant_id IS NOT NULL), 0)
FROM campaigns_sendbatch WHERE campaign_id = %(campaign_id)s
"""

# The chunk's counters and cursor, under the campaign's row lock, taken last (the chunk's new rows and
# batches are nobody else's until it commits) and held only to the commit.
ADVANCE_START = """
UPDATE campaigns_campaign
SET total_recipients = total_recipients + %(created)s, skipped_count = skipped_count + %(skipped)s,
    suppressed_at_start = suppressed_at_start + %(skipped)s, start_cursor = %(cursor)s, last_progress_at = now()
WHERE id = %(campaign_id)s
RETURNING status, ab_winner_id
"""

# A chunk made for a live campaign that was cancelled before the chunk committed: its rows are skipped,
# as the cancel did to the others (campaign locked already, then batches, then rows).
SKIP_CANCELLED_CHUNK = """
WITH batches AS (
    UPDATE campaigns_sendbatch SET status = 'done', updated_at = now()
    WHERE campaign_id = %(campaign_id)s AND number >= %(first_batch)s AND status IN ('waiting', 'queued', 'held')
    RETURNING id
), skipped AS (
    UPDATE campaigns_deliverylog SET status = 'skipped', last_error = 'cancelled', updated_at = now()
    WHERE campaign_id = %(campaign_id)s AND recipient_id > %(after)s AND recipient_id <= %(upto)s
      AND status = 'pending' AND (SELECT count(*) FROM batches) >= 0
    RETURNING id
)
UPDATE campaigns_campaign SET skipped_count = skipped_count + (SELECT count(*) FROM skipped)
WHERE id = %(campaign_id)s
"""

# One chunk of a campaign's start at a time (a redelivered start task and the sweep's may run at once).
START_LOCK = 26002


def create_start_chunk(campaign_id, chunk_size=None):
    """Create the delivery rows and batches of the campaign's next CHUNK_SIZE (START_CHUNK_SIZE)
    recipients after its start cursor, in a transaction of its own (or the caller's), and queue the
    batches that bring its queued and sending ones up to `batches_ahead`. Returns whether recipients
    remain; after the last chunk the cursor is empty and the campaign may complete.

    Paused, the chunk's batches wait for the resume; cancelled, its rows are skipped ("cancelled"). An
    A/B test's chunk gives the test its share of the chunk (CREATE_AB_DELIVERY_LOGS), held rest included,
    until a winner is picked; after that the chunk's batches are the winner's."""
    chunk_size = chunk_size or settings.START_CHUNK_SIZE
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [START_LOCK, campaign_id])
        campaign = Campaign.objects.filter(pk=campaign_id).first()
        if campaign is None or campaign.start_cursor is None:
            return False  # started in full (by another start task of it)
        after = campaign.start_cursor
        with connection.cursor() as cursor:
            cursor.execute(CHUNK_BOUND, {"campaign_id": campaign_id, "after": after, "size": chunk_size})
            upto, size = cursor.fetchone()
            cursor.execute(BATCHES_SO_FAR, {"campaign_id": campaign_id})
            first_batch, active, prior_sendable, prior_test = cursor.fetchone()
        live = campaign.status != Campaign.Status.CANCELLED
        sending = campaign.status == Campaign.Status.IN_PROGRESS
        last = size < chunk_size
        created = skipped = batches = 0
        queued, winner = [], campaign.ab_winner_id
        if size:
            split = ab_tests.split_for(campaign) if winner is None else None
            created, skipped, batches, queued = create_delivery_logs(
                campaign_id, batch_size(campaign), first_batch=first_batch, segment=campaign.segment, ab=split,
                after=after, upto=upto, live=live, winner=winner, prior=(prior_sendable, prior_test),
                ahead=max(0, batches_ahead(campaign_id) - active) if sending else 0)
        with connection.cursor() as cursor:
            cursor.execute(ADVANCE_START, {"campaign_id": campaign_id, "created": created, "skipped": skipped,
                                           "cursor": None if last else upto})
            status, winner_now = cursor.fetchone()
            if status == Campaign.Status.CANCELLED and live and batches:
                cursor.execute(SKIP_CANCELLED_CHUNK, {"campaign_id": campaign_id, "first_batch": first_batch,
                                                      "after": after, "upto": upto})
        released = 0
        if size and winner is None and winner_now is not None:
            # Staff picked the winner while this chunk was made: its held rest goes to the winner too.
            released = SendBatch.objects.filter(campaign_id=campaign_id, status=B.HELD).update(
                status=B.WAITING, variant_id=winner_now, updated_at=timezone.now())
        if status == Campaign.Status.IN_PROGRESS:
            if sending:
                dispatch_batches(campaign_id, queued)
            if batches and (not sending or released):
                queue_batches(campaign_id)  # resumed (or a winner picked) while this chunk was made
        made = prior_sendable + created
        if (prior_sendable < ledger.ANALYZE_AFTER_ROWS <= made) or (last and made >= ledger.ANALYZE_AFTER_ROWS):
            # After its batches are queued: the planner learns of the new rows (the admin's log list), once
            # they are many and again when all exist (autovacuum comes a minute or more later).
            transaction.on_commit(lambda: refresh_statistics(made), robust=True)
        logger.info("Campaign %s start: recipients %s to %s, %s delivery logs (%s suppressed or skipped), "
                    "%s batches (%s queued)%s", campaign_id, after + 1 if size else "-", upto or "-", created,
                    skipped, batches, len(queued), "; all created" if last else "")
        if last:
            transaction.on_commit(lambda: finalize_if_done(campaign_id))
    return not last


# --- one batch ------------------------------------------------------------------------------------

# The batch's row, claimed while the campaign is in progress. FOR SHARE on the campaign makes a
# concurrent pause or cancel wait for the claim to commit (and then leave its batch alone), or the
# claim wait for the cancel (and then find the campaign no longer in progress).
CLAIM_BATCH = """
WITH campaign AS (
    SELECT id FROM campaigns_campaign WHERE id = %(campaign_id)s AND status = 'in_progress' FOR SHARE
)
UPDATE campaigns_sendbatch AS b
SET status = 'sending', claim_token = %(token)s::uuid, lease_expires_at = now() + %(lease)s * interval '1 second',
    attempts = b.attempts + 1, in_flight = '{}', call_started_at = NULL, updated_at = now()
FROM campaign
WHERE b.campaign_id = campaign.id AND b.number = %(batch)s AND b.status IN ('waiting', 'queued')
RETURNING b.id, b.first_id, b.last_id, b.attempts, b.variant_id
"""

# The claimed batch's rows still to send, read (not written) in a statement of their own, so that its
# snapshot follows the claim: rows a previous claim of this batch wrote are not pending any more. Rows
# held back with their domain group wait for their time (campaigns.sending.domain_groups).
BATCH_ROWS = """
SELECT d.id, CASE WHEN s.id IS NULL THEN 'pending' ELSE 'skipped' END, d.attempts + 1,
       r.email, r.first_name, r.last_name, r.data, s.reason
FROM campaigns_deliverylog d
JOIN campaigns_recipient r ON r.id = d.recipient_id
LEFT JOIN campaigns_suppression s ON s.email = lower(r.email)
WHERE d.campaign_id = %(campaign_id)s AND d.status = 'pending' AND d.id BETWEEN %(first)s AND %(last)s
  AND d.batch_number = %(batch)s AND (d.not_before IS NULL OR d.not_before <= now())
ORDER BY d.id
"""

# The claim ends: the batch is done, queued again (its deferred rows retry) or waiting (a provider
# problem paused the campaign), and the campaign's next waiting batch is queued in its place.
FINISH_BATCH = f"""
WITH finished AS (
    UPDATE campaigns_sendbatch
    SET status = %(status)s, claim_token = NULL, lease_expires_at = NULL, in_flight = '{{}}',
        call_started_at = NULL, updated_at = now()
    WHERE {OWNED}
    RETURNING campaign_id
), next AS (
    UPDATE campaigns_sendbatch AS b SET status = 'queued', updated_at = now()
    WHERE b.id = (SELECT w.id FROM campaigns_sendbatch w
                  WHERE w.campaign_id = %(campaign)s AND w.status = 'waiting' AND %(more)s
                    AND EXISTS (SELECT 1 FROM finished)
                    AND EXISTS (SELECT 1 FROM campaigns_campaign c WHERE c.id = %(campaign)s AND c.status = 'in_progress')
                  ORDER BY w.number LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING b.number
)
SELECT (SELECT count(*) FROM finished), (SELECT number FROM next)
"""


@dataclass
class BatchReport:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    retrying: int = 0
    provider: str = ""
    retry_in: int | None = None
    waiting: str = ""  # why the batch was queued again to wait (a rate limit, a quota), for Flower


_compiled_cache = {}


def compiled_campaign(campaign):
    """Compile a campaign's templates once per version, not once per batch."""
    key = (campaign["id"], campaign["updated_at"], campaign.get("variant"))
    compiled = _compiled_cache.get(key)
    if compiled is None:
        if len(_compiled_cache) > 64:
            _compiled_cache.clear()
        compiled = _compiled_cache[key] = compile_campaign(
            campaign["subject"], campaign["html_body"], campaign["text_body"]
        )
    return compiled


def build_batch(campaign, claimed_rows, ledger=None):
    messages = [
        OutgoingMessage(delivery_id=pk, email=email, context=recipient_context(
            email, first, last, json.loads(data) if isinstance(data, str) else data or {},
            signed_links.unsubscribe_url(pk), signed_links.web_url(pk)))
        for pk, _status, _attempts, email, first, last, data in claimed_rows
    ]
    return Batch(campaign_id=campaign["id"], from_email=campaign["from_email"] or settings.DEFAULT_FROM_EMAIL,
                 reply_to=campaign["reply_to"], compiled=compiled_campaign(campaign), messages=messages,
                 categories=(f"campaign-{campaign['id']}",),
                 tracking=click_tracking.tracking_for(campaign) if campaign["track_engagement"] else None,
                 ledger=ledger, rate_wait=ratelimit.RateWaitBudget.from_settings() if ledger is not None else None,
                 domains=domain_groups.DomainThrottle.for_campaign(campaign["id"]) if ledger is not None else None)


def retry_delay(attempt):
    """Exponential backoff with jitter for a batch that must wait: ~10 s, 20 s, 40 s ... capped at 10 min."""
    return int(min(600, 10 * 2 ** max(0, attempt - 1)) * random.uniform(0.8, 1.2))


def send_batch(campaign_id, batch_number):
    """Claim batch BATCH_NUMBER of a campaign, send it through the provider chain, record every result."""
    report = BatchReport()
    campaign = (Campaign.objects.filter(pk=campaign_id)
                .values("id", "status", "subject", "html_body", "text_body", "from_email", "reply_to",
                        "updated_at", "track_engagement", "pool_id").first())
    if campaign is None or campaign["status"] != Campaign.Status.IN_PROGRESS:
        # Pause and cancel take effect here, at the batch boundary; resume queues the batch again.
        logger.info("Campaign %s batch %s not sent: campaign is %s", campaign_id, batch_number,
                    campaign and campaign["status"])
        return report

    token = uuid.uuid4()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(CLAIM_BATCH, {"token": token, "lease": settings.SEND_LEASE_SECONDS,
                                         "campaign_id": campaign_id, "batch": batch_number})
            batch = cursor.fetchone()
            if batch is None:
                # Another task of this batch has it or had it (a redelivery, a re-dispatch), or the
                # campaign stopped in between.
                logger.info("Campaign %s batch %s not claimed: already taken, done, or the campaign stopped",
                            campaign_id, batch_number)
                return report
            batch_id, first_id, last_id, batch_attempts, variant_id = batch
            if variant_id is not None:
                campaign = ab_tests.with_variant(campaign, variant_id)
            cursor.execute(BATCH_ROWS, {"campaign_id": campaign_id, "first": first_id, "last": last_id,
                                        "batch": batch_number})
            rows = cursor.fetchall()
    report.claimed = len(rows)
    claimed = [row[:7] for row in rows if row[1] == D.PENDING]
    attempts = {pk: n for pk, _s, n, *_ in claimed}
    ledger = BatchLedger(campaign_id, batch_id, token, attempts)
    suppressed = [(row[0], D.SKIPPED, "", "", f"suppressed: {row[7]}") for row in rows if row[1] == D.SKIPPED]
    if suppressed:  # suppressed since the start: their only write, as for any result
        ledger.write(suppressed)
        report.skipped = ledger.report.skipped

    provider, provider_problem, breaker = "", None, None
    unrenderable = cannot_render(campaign) if claimed else ""
    if unrenderable:
        # Sending it again cannot help: its rows fail with the reason and the campaign pauses (below),
        # rather than the batch going back to pending to fail the same way for ever.
        ledger.write([(pk, D.FAILED, "", "", unrenderable) for pk, *_ in claimed])
    elif claimed:
        try:
            with Heartbeat(batch_id, token):
                provider, results, provider_problem = send_claimed(campaign, batch_number, claimed, ledger)
                # Rows SMTP already recorded as it went are skipped here. A provider problem does not use
                # up attempts: its rows wait, pending, for the resume.
                ledger.record(provider, results, give_up=provider_problem is None)
                breaker = ledger.settle_held_refusals(len(claimed))
        except BaseException:
            # A crash inside the worker (a Redis error in the limiter, a soft time limit, a bug): rows
            # whose content never left go back to pending now, with the batch, queued again after a
            # backoff; the rows in flight become unknown.
            try:
                with transaction.atomic():
                    released = ledger.release_unstarted()
                    dispatch_batches(campaign_id, [batch_number], countdown=retry_delay(batch_attempts),
                                     waiting="queued again after an error")
                logger.warning("Campaign %s batch %s stopped by an error: %s rows back to pending",
                               campaign_id, batch_number, released)
            except Exception:  # e.g. the database is gone too: the sweep recovers the batch after the lease
                logger.exception("Campaign %s batch %s: could not release the unsent rows", campaign_id, batch_number)
            raise
    report.provider = provider
    report.sent, report.failed, report.unknown, report.retrying = (
        ledger.report.sent, ledger.report.failed, ledger.report.unknown, ledger.report.retrying)

    # Sending accounts: a pool at its limits queues the batch again, to be sent by itself once quota
    # frees (routing.wait_for_quota); its next batches would only wait too.
    quota_wait = isinstance(provider_problem, QuotaExhausted)
    stopping = provider_problem is not None or breaker is not None or bool(unrenderable)
    if quota_wait:
        status = B.QUEUED
    elif provider_problem is not None:
        status = B.WAITING  # resume queues it again
    else:
        # Rows held back with their domain group wait in the batch: it is queued again for when the
        # earliest hold ends (or sooner, for rows that retry after a backoff).
        due, held_until = domain_groups.batch_holds(campaign_id, batch_number, first_id, last_id)
        delays = [retry_delay(max(attempts.values(), default=1))] if due else []
        if held_until is not None:
            delays.append(max(1, math.ceil((held_until - timezone.now()).total_seconds())))
        status = B.QUEUED if delays else B.DONE
        report.retry_in = min(delays) if delays else None
    # A batch that stops the campaign pauses it in its own end: between an end and a pause committed apart,
    # another batch could complete the campaign (its rows all terminal) and the pause would be lost.
    if provider_problem is not None and not quota_wait:
        pause = (f"Sending paused: every mail provider refused this campaign's mail. {provider_problem}",
                 "provider problem")
    elif unrenderable:
        pause = (f"Sending paused: {unrenderable} The {report.failed} recipients of batch {batch_number} failed with "
                 "this reason; the rest stay pending. Cancel the campaign, or correct the content, resume, and retry "
                 "the failed recipients.", "content cannot be rendered")
    elif breaker is not None:
        pause = (breaker, "suppression circuit breaker")
    else:
        pause = None
    with transaction.atomic():
        if quota_wait or pause:
            Campaign.lock([campaign_id])  # it writes the campaign too: campaign before batch, as every writer
        finished, following = run_prepared(FINISH_BATCH, {"batch": batch_id, "token": token, "campaign": campaign_id,
                                                          "status": str(status),
                                                          "more": not stopping}).fetchone()
        if finished and status == B.QUEUED and not quota_wait:
            dispatch_batches(campaign_id, [batch_number], countdown=report.retry_in,
                             waiting=f"again in {report.retry_in} s for rows that retry or wait for their domain group")
        if following is not None:
            dispatch_batches(campaign_id, [following])
        if quota_wait and finished:
            # In the batch's own end, so that no sweep sees it ended without its wait noted.
            routing.wait_for_quota(campaign_id, batch_number, provider_problem.until,
                                   rate_only=isinstance(provider_problem, RateWaitTooLong), reason=provider_problem)
            report.waiting = routing.waiting_label(provider_problem, provider_problem.until)
        if pause:
            pause_with_reason(campaign_id, *pause)
    if quota_wait or pause:
        return report
    logger.info("Campaign %s batch %s via %s: sent=%s failed=%s unknown=%s skipped=%s retrying=%s",
                campaign_id, batch_number, provider or "-", report.sent, report.failed, report.unknown,
                report.skipped, report.retrying)
    finalize_if_done(campaign_id)
    return report


def cannot_render(campaign):
    """Why the content a batch would send (the campaign's, or its variant's) cannot be rendered, or ''.
    Scheduling refuses such content; this catches what changed since (campaigns.experiments.ab_tests.check_ready)."""
    try:
        compiled_campaign(campaign)
    except MergeTagError as error:
        letter = campaign.get("variant_letter")
        return f"{f'variant {letter}' if letter else 'the content'} cannot be rendered: {error}"
    return ""


def send_claimed(campaign, batch_number, claimed, ledger):
    """Send the claimed rows through the campaign's pool (campaigns.sending.routing): (provider name,
    one DeliveryResult each, and the ProviderRefused or QuotaExhausted that stopped it, or None)."""
    batch = build_batch(campaign, claimed, ledger)
    try:
        provider, results = routing.send(batch, campaign["pool_id"])
        return provider, results, None
    except ProviderError as error:
        # No provider is left for the rest of the batch. What was settled on the way stands; the rest
        # was not sent: it goes back to pending, to be retried later, or after a resume when every
        # provider refused us (send_batch pauses the campaign).
        provider, results = (error.provider if error.results else ""), list(error.results)
        settled = {result.delivery_id for result in results}
        results += [DeliveryResult(m.delivery_id, Outcome.DEFERRED, error=f"no provider available: {error}")
                    for m in batch.messages if m.delivery_id not in settled]
        # A rate wait is the ordinary pace of a paced batch, not a problem.
        logger.log(logging.INFO if isinstance(error, RateWaitTooLong) else logging.WARNING,
                   "Campaign %s batch %s: no provider could send %d messages now (%s)", campaign["id"],
                   batch_number, len(batch.messages) - len(settled), for_log(error))
        return provider, results, (error if isinstance(error, (ProviderRefused, QuotaExhausted)) else None)


def pause_with_reason(campaign_id, reason, what):
    """Pause a live campaign with REASON on its page (WHAT names it in the log)."""
    try:
        states.pause(campaign_id, reason=reason[:2000])
    except IllegalTransition:
        return  # another batch paused it first, or staff paused or cancelled it
    logger.error("Campaign %s paused: %s: %s", campaign_id, what, for_log(reason))


# --- finalising ---------------------------------------------------------------------------------

def has_unfinished_rows(campaign_id):
    # A row stays pending until its result, in flight or not (its batch holds the claim); a start
    # still creating rows (its cursor set) has rows to come.
    return (DeliveryLog.objects.filter(campaign_id=campaign_id, status=D.PENDING).exists()
            or Campaign.objects.filter(pk=campaign_id, start_cursor__isnull=False).exists())


def finalize_if_done(campaign_id):
    """Complete (or fail) a live campaign once every recipient is terminal; exactly once.

    The campaign row is locked before its rows are looked at, and the transition itself is conditional
    on no row being pending, so a concurrent "retry failed" (which reopens the campaign and
    puts rows back to pending under the same lock) can never be completed over. Nor while another batch
    still holds its claim: its rows may all be written, but its end may still pause the campaign (the
    suppression circuit breaker, a provider problem), and that batch finalises the campaign itself.
    """
    if has_unfinished_rows(campaign_id):
        return None  # the cheap, common answer while batches are still going
    with transaction.atomic():
        counts = (Campaign.objects.select_for_update().filter(pk=campaign_id)
                  .values("status", "sent_count", "failed_count", "unknown_count").first())
        if not counts or counts["status"] != Campaign.Status.IN_PROGRESS:
            return None
        unfinished = DeliveryLog.objects.filter(campaign_id=OuterRef("pk"), status=D.PENDING)
        claimed = SendBatch.objects.filter(campaign_id=OuterRef("pk"), status=B.SENDING)
        all_terminal = ~Exists(unfinished) & ~Exists(claimed) & Q(start_cursor__isnull=True)
        try:
            if counts["sent_count"] == 0 and counts["failed_count"] + counts["unknown_count"] > 0:
                last = (DeliveryLog.objects.filter(campaign_id=campaign_id, status=D.FAILED)
                        .exclude(last_error="").values_list("last_error", flat=True).first())
                status = states.fail(campaign_id, f"Nothing could be sent. Last error: {last or 'unknown'}",
                                     where=all_terminal)
            else:
                status = states.complete(campaign_id, where=all_terminal)
        except IllegalTransition:
            return None  # rows went back to pending, or another batch or the sweep finalised it first
    logger.info("Campaign %s finalised: %s (sent=%s failed=%s unknown=%s)", campaign_id, status,
                counts["sent_count"], counts["failed_count"], counts["unknown_count"])
    return status
