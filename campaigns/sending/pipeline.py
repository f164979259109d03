"""The sending pipeline: start a campaign, send one batch, finalise. Each step keeps the sending
promises of docs/design.md, numbered as there:

1. A campaign starts once: the start is a conditional UPDATE on status (campaigns.states).
2. Each recipient gets exactly one DeliveryLog: one INSERT ... SELECT ... ON CONFLICT DO NOTHING.
3. Nobody is mailed twice automatically: a batch claims its rows with a short lease that it keeps
   renewing, and the providers record that the call began at the last moment before bytes leave;
   results are written only for rows still under its claim (campaigns.sending.ledger).
5. Work is enqueued only after its transaction commits.
6. Pause and cancel take effect at the batch boundary: send_batch checks the status before it claims.
"""

import json
import logging
import random
import uuid
from dataclasses import dataclass

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef
from django.db.models.functions import Now
from django.utils import timezone

from campaigns import click_tracking, signed_links, states
from campaigns.exceptions import IllegalTransition, ProviderError, ProviderRefused, QuotaExhausted
from campaigns.logsafe import for_log
from campaigns.models import MAX_BATCH_SIZE, Campaign, DeliveryLog
from campaigns.rendering import compile_campaign, recipient_context
from campaigns.segments import compile_segment
from campaigns.sending import routing
from campaigns.sending.ledger import BatchLedger, Heartbeat
from campaigns.sending.providers.base import Batch, DeliveryResult, Outcome, OutgoingMessage

logger = logging.getLogger(__name__)
D = DeliveryLog.Status
SEND_BATCH_TASK = "campaigns.tasks.senders.send_batch"
START_TASK = "campaigns.tasks.scheduler.start_campaign"


# --- enqueueing (always after commit) ----------------------------------------------------------

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


def pending_batch_numbers(campaign_id):
    return list(
        DeliveryLog.objects.filter(campaign_id=campaign_id, status=D.PENDING)
        .values_list("batch_number", flat=True).distinct()
    )


# --- start --------------------------------------------------------------------------------------

def batch_size(campaign):
    """Rows per batch: the campaign's setting, capped here too because validators do not run on every save."""
    return min(campaign.batch_size, MAX_BATCH_SIZE)


def batch_number_sql(window):
    """The SQL numbering rows into batches: in WINDOW's order, row n goes to batch first_batch + (n - 1) / batch_size."""
    return f"%(first_batch)s + (row_number() OVER ({window}) - 1) / %(batch_size)s"


CREATE_DELIVERY_LOGS = f"""
WITH inserted AS (
    INSERT INTO campaigns_deliverylog
        (campaign_id, recipient_id, email, status, batch_number, last_error, provider, provider_message_id,
         attempts, updated_at)
    SELECT r.campaign_id, r.id, r.email,
           CASE WHEN s.id IS NULL THEN 'pending' ELSE 'skipped' END,
           {batch_number_sql("PARTITION BY s.id IS NULL ORDER BY r.id")},
           CASE WHEN s.id IS NULL THEN '' ELSE 'suppressed: ' || s.reason END,
           '', '', 0, now()
    FROM campaigns_recipient r
    LEFT JOIN campaigns_suppression s ON s.email = lower(r.email)
    WHERE r.campaign_id = %(campaign_id)s AND /* segment */ TRUE
    ON CONFLICT (campaign_id, recipient_id) DO NOTHING
    RETURNING status, batch_number
)
SELECT count(*), count(*) FILTER (WHERE status = 'skipped'),
       coalesce(array_agg(DISTINCT batch_number) FILTER (WHERE status = 'pending'), '{{}}')
FROM inserted
"""

REQUEUE_IN_BATCHES = f"""
WITH requeued AS (
    UPDATE campaigns_deliverylog AS d
    SET status = 'pending', attempts = 0, call_started_at = NULL, updated_at = now(), batch_number = n.batch_number
    FROM (SELECT id, {batch_number_sql("ORDER BY id")} AS batch_number FROM campaigns_deliverylog
          WHERE campaign_id = %(campaign_id)s AND status = %(status)s) AS n
    WHERE d.id = n.id AND d.status = %(status)s
    RETURNING d.batch_number
)
SELECT coalesce(array_agg(DISTINCT batch_number), '{{}}') FROM requeued
"""


def create_delivery_logs(campaign_id, batch_size, first_batch=0, segment=None):
    """One DeliveryLog per recipient that has none yet (of SEGMENT's recipients only, campaigns.segments),
    in one statement; returns (created, skipped, batches)."""
    segment_sql, segment_params = compile_segment(segment)
    with connection.cursor() as cursor:
        cursor.execute(CREATE_DELIVERY_LOGS.replace("/* segment */ TRUE", segment_sql),
                       {**segment_params, "campaign_id": campaign_id, "batch_size": batch_size,
                        "first_batch": first_batch})
        created, skipped, batches = cursor.fetchone()
    return created, skipped, batches


def requeue_in_batches(campaign_id, status, first_batch, batch_size):
    """Every STATUS row of the campaign back to pending, in fresh batches from FIRST_BATCH; returns their numbers."""
    with connection.cursor() as cursor:
        cursor.execute(REQUEUE_IN_BATCHES, {"campaign_id": campaign_id, "status": status, "first_batch": first_batch,
                                            "batch_size": batch_size})
        return cursor.fetchone()[0]


def start_campaign(campaign_id):
    """Start a due scheduled campaign exactly once: delivery logs, counters, then its batches.

    Safe to call any number of times (ETA task, beat sweep, redelivery): only the first call that
    finds the campaign scheduled and due does anything.
    """
    now = timezone.now()
    with transaction.atomic():
        try:
            states.start(campaign_id, due_by=now)
        except IllegalTransition as refused:
            if refused.actual_status == Campaign.Status.SCHEDULED:
                logger.debug("Campaign %s is not due yet", campaign_id)
            else:
                logger.info("Campaign %s not started: it is %s", campaign_id, refused.actual_status)
            return False
        campaign = Campaign.objects.get(pk=campaign_id)
        created, skipped, batches = create_delivery_logs(campaign_id, batch_size(campaign), segment=campaign.segment)
        Campaign.objects.filter(pk=campaign_id).update(
            total_recipients=created, skipped_count=F("skipped_count") + skipped,
            last_progress_at=Now(),
        )
        dispatch_batches(campaign_id, batches)
        logger.info("Campaign %s started: %s recipients, %s suppressed, %s batches of %s",
                    campaign_id, created, skipped, len(batches), campaign.batch_size)
        if not batches:
            transaction.on_commit(lambda: finalize_if_done(campaign_id))
    return True


# --- one batch ------------------------------------------------------------------------------------

CLAIM_BATCH = """
UPDATE campaigns_deliverylog AS d
SET status = CASE WHEN s.id IS NULL THEN 'sending' ELSE 'skipped' END,
    last_error = CASE WHEN s.id IS NULL THEN d.last_error ELSE 'suppressed: ' || s.reason END,
    claim_token = CASE WHEN s.id IS NULL THEN %(token)s::uuid END,
    lease_expires_at = CASE WHEN s.id IS NULL THEN now() + %(lease)s * interval '1 second' END,
    attempts = d.attempts + CASE WHEN s.id IS NULL THEN 1 ELSE 0 END,
    call_started_at = NULL,
    updated_at = now()
FROM campaigns_recipient r
LEFT JOIN campaigns_suppression s ON s.email = lower(r.email)
WHERE d.id IN (
        SELECT id FROM campaigns_deliverylog
        WHERE campaign_id = %(campaign_id)s AND batch_number = %(batch)s AND status = 'pending'
        ORDER BY id FOR UPDATE SKIP LOCKED)
  AND r.id = d.recipient_id
RETURNING d.id, d.status, d.attempts, r.email, r.first_name, r.last_name, r.data
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


_compiled_cache = {}


def compiled_campaign(campaign):
    """Compile a campaign's templates once per version, not once per batch."""
    key = (campaign["id"], campaign["updated_at"])
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
                 ledger=ledger)


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
        # Pause and cancel take effect here, at the batch boundary; resume dispatches the batch again.
        logger.info("Campaign %s batch %s not sent: campaign is %s", campaign_id, batch_number,
                    campaign and campaign["status"])
        return report

    token = uuid.uuid4()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(CLAIM_BATCH, {"token": token, "lease": settings.SEND_LEASE_SECONDS,
                                         "campaign_id": campaign_id, "batch": batch_number})
            rows = cursor.fetchall()
        report.claimed = len(rows)
        report.skipped = sum(1 for row in rows if row[1] == D.SKIPPED)
        if report.skipped:
            Campaign.objects.filter(pk=campaign_id).update(skipped_count=F("skipped_count") + report.skipped)
    claimed = [row for row in rows if row[1] == D.SENDING]
    if not claimed:
        if rows:
            finalize_if_done(campaign_id)
        return report

    attempts = {pk: n for pk, _s, n, *_ in claimed}
    ledger = BatchLedger(campaign_id, token, attempts)
    try:
        with Heartbeat(token, attempts):
            provider, results, provider_problem = send_claimed(campaign, batch_number, claimed, ledger)
            # Rows SMTP already recorded as it went are skipped here. A provider problem does not use
            # up attempts: its rows wait, pending, for the resume.
            ledger.record(provider, results, give_up=provider_problem is None)
    except BaseException:
        # A crash inside the worker (a Redis error in the limiter, a soft time limit, a bug): rows
        # whose content never left go back to pending now; the others wait for the sweep (unknown).
        try:
            ledger.release_unstarted()
        except Exception:  # e.g. the database is gone too: the sweep releases them after the lease
            logger.exception("Campaign %s batch %s: could not release the unsent rows", campaign_id, batch_number)
        raise
    report.provider = provider
    report.sent, report.failed, report.unknown, report.retrying = (
        ledger.report.sent, ledger.report.failed, ledger.report.unknown, ledger.report.retrying)
    if isinstance(provider_problem, QuotaExhausted):  # sending accounts: the pool is at its limits
        routing.wait_for_quota(campaign_id, batch_number, provider_problem.until)
        return report
    if provider_problem is not None:
        pause_for_provider_problem(campaign_id, provider_problem)
        return report

    if report.retrying:
        report.retry_in = retry_delay(max(attempts.values()))
        with transaction.atomic():
            dispatch_batches(campaign_id, [batch_number], countdown=report.retry_in)
    logger.info("Campaign %s batch %s via %s: sent=%s failed=%s unknown=%s skipped=%s retrying=%s",
                campaign_id, batch_number, provider or "-", report.sent, report.failed, report.unknown,
                report.skipped, report.retrying)
    finalize_if_done(campaign_id)
    return report


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
        # provider refused us (pause_for_provider_problem).
        provider, results = (error.provider if error.results else ""), list(error.results)
        settled = {result.delivery_id for result in results}
        results += [DeliveryResult(m.delivery_id, Outcome.DEFERRED, error=f"no provider available: {error}")
                    for m in batch.messages if m.delivery_id not in settled]
        logger.warning("Campaign %s batch %s: no provider could send %d messages (%s)", campaign["id"],
                       batch_number, len(batch.messages) - len(settled), for_log(error))
        return provider, results, (error if isinstance(error, (ProviderRefused, QuotaExhausted)) else None)


def pause_for_provider_problem(campaign_id, error):
    """Every provider refused us (credentials, configuration, a relay's policy): waiting will not fix
    it, so the campaign pauses with the reason on its page, and resuming sends the pending rows."""
    reason = f"Sending paused: every mail provider refused this campaign's mail. {error}"
    try:
        states.pause(campaign_id, reason=reason[:2000])
    except IllegalTransition:
        return  # another batch paused it first, or staff paused or cancelled it
    logger.error("Campaign %s paused: provider problem: %s", campaign_id, for_log(error))


# --- finalising ---------------------------------------------------------------------------------

def has_unfinished_rows(campaign_id):
    return DeliveryLog.objects.filter(campaign_id=campaign_id, status__in=(D.PENDING, D.SENDING)).exists()


def finalize_if_done(campaign_id):
    """Complete (or fail) a live campaign once every recipient is terminal; exactly once.

    The campaign row is locked before its rows are looked at, and the transition itself is conditional
    on no row being pending or sending, so a concurrent "retry failed" (which reopens the campaign and
    puts rows back to pending under the same lock) can never be completed over.
    """
    if has_unfinished_rows(campaign_id):
        return None  # the cheap, common answer while batches are still going
    with transaction.atomic():
        counts = (Campaign.objects.select_for_update().filter(pk=campaign_id)
                  .values("status", "sent_count", "failed_count", "unknown_count").first())
        if not counts or counts["status"] != Campaign.Status.IN_PROGRESS:
            return None
        unfinished = DeliveryLog.objects.filter(campaign_id=OuterRef("pk"), status__in=(D.PENDING, D.SENDING))
        all_terminal = ~Exists(unfinished)
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
