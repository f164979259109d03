"""A batch's claim on its delivery rows, as the providers see it: the lease a live batch keeps
renewing, the "call began" marks set at the last moment before bytes leave, and the results written
as they become known.

The claim lives on the batch's own row (SendBatch): its token, its lease and the ids whose call began
(`in_flight`). A delivery row stays `pending` while its batch holds it and is written once, with its
result, and only while the batch's claim is still this one, so a batch whose claim expired (and was
recovered by the sweep) can no longer change rows it does not own. An expired claim makes exactly
the `in_flight` rows unknown; the batch's other pending rows are sent again.

The guarantees this gives are set out for staff and ops in docs/delivery-guarantees.md.
"""

import logging
import threading
from contextlib import nullcontext
from dataclasses import dataclass

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F

from campaigns.audience import suppression
from campaigns.models import Campaign, DeliveryLog, Suppression
from campaigns.sending.providers.base import Outcome
from campaigns.webhooks import events as webhook_events

logger = logging.getLogger(__name__)
D = DeliveryLog.Status
RESULT_EVENTS = {"delivery.sent", "delivery.failed", "delivery.unknown"}

# Every statement on a claimed batch names it by id and claim token, and only while it is sending.
OWNED = ("campaigns_sendbatch.id = %(batch)s AND campaigns_sendbatch.claim_token = %(token)s::uuid "
         "AND campaigns_sendbatch.status = 'sending'")

RENEW_LEASE = f"""
UPDATE campaigns_sendbatch SET lease_expires_at = now() + %(lease)s * interval '1 second' WHERE {OWNED}
"""

# The call for these rows begins now: one small row written, however many messages (SMTP marks each).
MARK_CALL_BEGAN = f"""
UPDATE campaigns_sendbatch SET in_flight = in_flight || %(ids)s::bigint[],
    call_started_at = coalesce(call_started_at, now())
WHERE {OWNED}
"""

# The ids of IN_FLIGHT without those of %(ids)s (array(...) is '{{}}' when none is left).
IN_FLIGHT_WITHOUT_IDS = "array(SELECT x FROM unnest(in_flight) AS x WHERE x <> ALL(%(ids)s::bigint[]))"

CLEAR_CALL_BEGAN = f"""
UPDATE campaigns_sendbatch SET in_flight = {IN_FLIGHT_WITHOUT_IDS},
    call_started_at = CASE WHEN {IN_FLIGHT_WITHOUT_IDS} = '{{}}' THEN NULL ELSE call_started_at END
WHERE {OWNED}
"""

# A row whose result is not certain (unknown, deferred, skipped) for which the provider's events
# already said what it did with the message (kept early, before the result, by provider events): the
# evidence settles it. Read from the row being updated, so it is the latest committed version.
EVIDENCE_APPLIES = "(d.early_evidence <> '' AND v.status IN ('unknown', 'pending', 'skipped'))"
STATUS_WITH_EVIDENCE = f"(CASE WHEN {EVIDENCE_APPLIES} THEN d.early_evidence ELSE v.status END)"

# Results of rows this claim still owns, and the campaign's counters, in one statement (so they
# commit together, in one round trip). The campaign row is locked first, the order cancel and the
# sweep use (campaign, batch, rows): every other CTE depends on `campaign`, so none runs before its
# lock is held. The batch's claim must still be this one (`batch` is empty otherwise, and nothing is
# written); the rows written leave its in-flight set in the same statement, so after any commit the
# in-flight set is exactly the rows whose call began and whose result is not written.
# The rows are found by their ids (the claim's own), never by campaign and status: that index would
# walk every pending row of the campaign.
# Rows going back to pending end `skipped` with "cancelled" when the campaign is cancelled. `status`
# is the row as locked: after waiting for a concurrent cancel, FOR UPDATE returns the cancel's version.
# Rows going back to pending count their attempt when it counted; a provider problem (nothing of
# theirs left) does not, nor does a row held back with its domain group (`not_before`: it waits until
# then, campaigns.sending.domain_groups). Every row written gets its `not_before` (NULL: none).
# Early evidence (above) settles rows whose result is not certain.
WRITE_RESULTS = f"""
WITH campaign AS (
    SELECT status FROM campaigns_campaign WHERE id = %(campaign)s FOR UPDATE
), batch AS (
    UPDATE campaigns_sendbatch SET in_flight = {IN_FLIGHT_WITHOUT_IDS},
        call_started_at = CASE WHEN {IN_FLIGHT_WITHOUT_IDS} = '{{}}' THEN NULL ELSE call_started_at END
    FROM campaign
    WHERE {OWNED}
    RETURNING campaigns_sendbatch.campaign_id, campaigns_sendbatch.number
), v AS (
    SELECT v.id, v.provider, v.message_id,
           CASE WHEN v.status = 'pending' AND campaign.status = 'cancelled' THEN 'skipped' ELSE v.status END AS status,
           CASE WHEN v.status = 'pending' AND campaign.status = 'cancelled' THEN 'cancelled' ELSE v.error END AS error,
           CASE WHEN v.status = 'pending' THEN v.not_before END AS not_before
    FROM unnest(%(ids)s::bigint[], %(statuses)s::text[], %(providers)s::text[], %(message_ids)s::text[],
                %(errors)s::text[], %(holds)s::timestamptz[])
         AS v(id, status, provider, message_id, error, not_before), campaign
), written AS (
    UPDATE campaigns_deliverylog AS d
    SET status = {STATUS_WITH_EVIDENCE}, provider = v.provider, provider_message_id = v.message_id,
        last_error = CASE WHEN {EVIDENCE_APPLIES} THEN d.early_evidence_note ELSE v.error END,
        sent_at = CASE WHEN {STATUS_WITH_EVIDENCE} = 'sent' THEN now() ELSE d.sent_at END,
        attempts = CASE WHEN v.status = 'skipped' OR (v.status = 'pending' AND (NOT %(counted)s OR v.not_before IS NOT NULL))
                        THEN d.attempts ELSE d.attempts + 1 END,
        not_before = v.not_before,
        early_evidence = CASE WHEN {STATUS_WITH_EVIDENCE} = 'pending' THEN d.early_evidence ELSE '' END,
        early_evidence_note = CASE WHEN {STATUS_WITH_EVIDENCE} = 'pending' THEN d.early_evidence_note ELSE '' END,
        updated_at = now()
    FROM v, batch
    WHERE d.id = v.id AND d.status = 'pending' AND d.batch_number = batch.number
    RETURNING d.id, d.status
), counted AS (
    UPDATE campaigns_campaign AS c
    SET sent_count = sent_count + n.sent, failed_count = failed_count + n.failed,
        unknown_count = unknown_count + n.unknown, skipped_count = skipped_count + n.skipped,
        last_progress_at = now()
    FROM (SELECT count(*) FILTER (WHERE status = 'sent') AS sent, count(*) FILTER (WHERE status = 'failed') AS failed,
                 count(*) FILTER (WHERE status = 'unknown') AS unknown,
                 count(*) FILTER (WHERE status = 'skipped') AS skipped
          FROM written) AS n
    WHERE c.id = %(campaign)s
)
SELECT id, status FROM written
"""

# A late result from a worker whose claim expired: recorded when it is more certain than what the
# row holds, that is, the provider accepted (or refused) a row the sweep could only mark unknown.
# Rows put back to pending since (a staff re-send) are left alone. Campaign first, as above.
LATE_RESULTS = """
WITH campaign AS (
    SELECT id FROM campaigns_campaign WHERE id = %(campaign)s FOR UPDATE
), settled AS (
    UPDATE campaigns_deliverylog AS d
    SET status = v.status, provider = v.provider, provider_message_id = v.message_id, last_error = v.error,
        sent_at = CASE WHEN v.status = 'sent' THEN now() ELSE d.sent_at END, updated_at = now()
    FROM unnest(%(ids)s::bigint[], %(statuses)s::text[], %(providers)s::text[], %(message_ids)s::text[],
                %(errors)s::text[]) AS v(id, status, provider, message_id, error), campaign
    WHERE d.id = v.id AND d.status = 'unknown' AND v.status IN ('sent', 'failed')
    RETURNING d.id, d.status
), counted AS (
    UPDATE campaigns_campaign AS c
    SET sent_count = sent_count + n.sent, failed_count = failed_count + n.failed,
        unknown_count = unknown_count - n.sent - n.failed
    FROM (SELECT count(*) FILTER (WHERE status = 'sent') AS sent, count(*) FILTER (WHERE status = 'failed') AS failed
          FROM settled) AS n
    WHERE c.id = %(campaign)s
)
SELECT id, status FROM settled
"""

# A claim's batch stops: its rows in flight become unknown (with the counter), and the batch ends
# its claim, with STATUS (queued for another attempt, waiting, or done), in one statement. Campaign,
# batch, rows: the lock order of every writer. CONDITION narrows which batch (a claim's own, or an
# expired one for the sweep); RELEASED counts the pending rows that go back to be sent.
END_CLAIM = """
WITH campaign AS (
    SELECT id, status FROM campaigns_campaign WHERE id = %(campaign)s FOR UPDATE
), old AS (
    SELECT b.id, b.number, b.in_flight FROM campaigns_sendbatch b, campaign
    WHERE b.id = %(batch)s AND b.status = 'sending' AND {condition}
    FOR UPDATE OF b
), ended AS (
    UPDATE campaigns_sendbatch AS b
    SET status = CASE WHEN campaign.status = 'in_progress' THEN %(status)s ELSE 'waiting' END,
        claim_token = NULL, lease_expires_at = NULL, in_flight = '{{}}', call_started_at = NULL, updated_at = now()
    FROM old, campaign WHERE b.id = old.id
    RETURNING b.number, b.status, b.first_id, b.last_id
), lost AS (
    UPDATE campaigns_deliverylog AS d
    SET status = CASE WHEN d.early_evidence <> '' THEN d.early_evidence ELSE 'unknown' END,
        last_error = CASE WHEN d.early_evidence <> '' THEN d.early_evidence_note ELSE %(reason)s END,
        sent_at = CASE WHEN d.early_evidence = 'sent' THEN now() ELSE d.sent_at END,
        early_evidence = '', early_evidence_note = '', attempts = d.attempts + 1, updated_at = now()
    FROM old
    WHERE d.id = ANY(old.in_flight) AND d.status = 'pending' AND d.batch_number = old.number
    RETURNING d.id, d.status
), counted AS (
    UPDATE campaigns_campaign AS c
    SET unknown_count = unknown_count + n.unknown, sent_count = sent_count + n.sent,
        failed_count = failed_count + n.failed
    FROM (SELECT count(*) FILTER (WHERE status = 'unknown') AS unknown, count(*) FILTER (WHERE status = 'sent') AS sent,
                 count(*) FILTER (WHERE status = 'failed') AS failed FROM lost) AS n
    WHERE c.id = %(campaign)s AND EXISTS (SELECT 1 FROM lost)
)
SELECT ended.number, ended.status, (SELECT count(*) FROM lost WHERE status = 'unknown'),
       (SELECT count(*) FROM campaigns_deliverylog d, old
        WHERE d.campaign_id = %(campaign)s AND d.status = 'pending' AND d.id BETWEEN ended.first_id AND ended.last_id
          AND d.batch_number = ended.number AND NOT (d.id = ANY(old.in_flight))),
       settled.n
FROM ended, (SELECT count(*) AS n FROM lost WHERE status <> 'unknown') AS settled
"""
RELEASE_OWN_CLAIM = END_CLAIM.format(condition="b.claim_token = %(token)s::uuid")
RECOVER_EXPIRED_CLAIM = END_CLAIM.format(condition="b.lease_expires_at < now()")

# How the suppression circuit breaker's pause reason starts (the campaign page offers to confirm then).
BREAKER_PAUSE = "Sending paused: the mail server refused"

WORKER_STOPPED = "the batch stopped after the provider call began (error in the worker); not re-sent automatically"
WORKER_LOST = "claim expired after the provider call began (worker lost); not re-sent automatically"


def run_prepared(sql, params):
    """Run SQL (a constant) on Django's connection, in whatever transaction it is in, with server-side
    binding and, unless SEND_PREPARED_STATEMENTS is off, as a prepared statement: for the statements
    a batch runs per message or per small chunk, no parsing, planning or client-side quoting per call.
    Returns the cursor, for rowcount and rows."""
    connection.ensure_connection()
    conn = connection.connection
    prepare = settings.SEND_PREPARED_STATEMENTS
    if prepare and conn.prepare_threshold is None:
        # Django turns preparing off. Its own cursors bind client-side and never prepare, so this
        # lets only these statements (prepare=True) be prepared, never any other automatically.
        conn.prepare_threshold = NEVER_AUTOMATICALLY
    with connection.wrap_database_errors:
        cursor = psycopg.Cursor(conn)
        cursor.execute(sql, params, prepare=prepare or None)
        return cursor


NEVER_AUTOMATICALLY = 2 ** 31


class Heartbeat:
    """Renews a live batch's lease every third of it, from a thread of its own (with its own
    database connection), so a slow batch keeps its claim and a dead one loses it within one lease."""

    def __init__(self, batch_id, token, lease=None):
        self.batch_id, self.token = batch_id, token
        self.lease = lease or settings.SEND_LEASE_SECONDS
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join(timeout=10)

    def _run(self):
        try:
            while not self.stopped.wait(self.lease / 3):
                try:
                    renew_lease(self.batch_id, self.token, self.lease)
                except Exception:  # a lost connection must not end the thread: try again next time
                    logger.exception("Lease renewal failed; retrying")
                    connection.close()
        finally:
            connection.close()


def renew_lease(batch_id, token, lease):
    with connection.cursor() as cursor:
        cursor.execute(RENEW_LEASE, {"batch": batch_id, "token": token, "lease": lease})
        return cursor.rowcount


class BatchLedger:
    """One claim's view of its rows, handed to providers with the batch (Batch.ledger).

    Providers call `call_began` at the last moment before bytes leave, `call_ended` when a call
    was refused before anything was accepted, and (SMTP) `record` for each small chunk of results as
    it goes. `recorded` holds the rows already written, so the pipeline writes only the rest.
    """

    def __init__(self, campaign_id, batch_id, token, attempts):
        self.campaign_id = campaign_id
        self.batch_id = batch_id
        self.token = token
        self.attempts = attempts  # delivery id -> attempts, this one included
        self.recorded = set()
        self.held = set()  # rows refused as dead addresses, written failed, not suppressed yet (in memory)
        self.report = LedgerReport()

    def _owned(self, **params):
        return {"batch": self.batch_id, "token": self.token, **params}

    def call_began(self, delivery_ids):
        """Mark the call as begun for DELIVERY_IDS; returns the set of those this claim still owns
        (all of them, or none once the batch's claim is lost)."""
        ids = list(delivery_ids)
        if not ids:
            return set()
        return set(ids) if run_prepared(MARK_CALL_BEGAN, self._owned(ids=ids)).rowcount == 1 else set()

    def call_ended(self, delivery_ids):
        """The call was refused before the provider accepted anything: the rows are not in flight."""
        run_prepared(CLEAR_CALL_BEGAN, self._owned(ids=list(delivery_ids)))

    def release_unstarted(self):
        """The batch stops here (the worker raised): rows whose content never left go back to pending
        at once, with the batch (waiting, for the next batch or the sweep to queue); the rows in flight
        become unknown now, as the sweep would make them after the lease. Returns the rows released."""
        with transaction.atomic():
            row = run_prepared(RELEASE_OWN_CLAIM, self._owned(campaign=self.campaign_id, status="waiting",
                                                              reason=WORKER_STOPPED)).fetchone()
        return row[3] if row else 0

    def record(self, provider, results, give_up=True):
        """Write RESULTS (DeliveryResults) now, with the campaign's counters. With GIVE_UP, a deferred
        row that has used its last attempt is failed rather than put back to pending; without it (a
        provider problem), deferred rows go back to pending and this attempt does not count."""
        rows = [self.row_for(provider, r, give_up) for r in results if r.delivery_id not in self.recorded]
        bounced = [r.delivery_id for r in results if r.bounced]
        self.write(rows, bounced, attempt_counted=give_up)

    def settle_held_refusals(self, batch_size):
        """The suppression circuit breaker, at the batch's end: the addresses this claim saw refused as
        dead are suppressed, unless they are more than SEND_SUPPRESSION_BREAKER_SHARE of the batch
        (and at least SEND_SUPPRESSION_BREAKER_MIN): so many at once says more about the server than
        about the addresses (a relay that refuses every unknown sender, a broken directory), so they
        stay held (failed, not suppressed) and the reason is returned, for the campaign to pause
        until staff confirm the addresses really are dead (services.confirm_dead_addresses)."""
        if not self.held:
            return None
        share = settings.SEND_SUPPRESSION_BREAKER_SHARE
        if len(self.held) >= settings.SEND_SUPPRESSION_BREAKER_MIN and len(self.held) > share * max(1, batch_size):
            logger.error("Campaign %s: %d of a batch of %d refused as dead addresses (more than %d%%): none suppressed, "
                         "held for staff to confirm", self.campaign_id, len(self.held), batch_size, round(share * 100))
            reason = (f"{BREAKER_PAUSE} {len(self.held)} of a batch of {batch_size} recipients "
                          f"as addresses that do not exist (more than {share:.0%}). So many at once is more likely a "
                          f"problem of the server or of our sender than dead addresses, so none was suppressed: they are "
                          f"failed, with the server's reply. Check the replies in the delivery log; if these addresses "
                          f"really are dead, confirm it to suppress them and go on.")
            with transaction.atomic():
                Campaign.lock([self.campaign_id])
                DeliveryLog.objects.filter(pk__in=self.held, status=D.FAILED).update(suppression_held=True)
            return reason
        suppress_bounced(self.campaign_id, DeliveryLog.objects.filter(pk__in=self.held).values_list("email", flat=True))
        return None

    def row_for(self, provider, result, give_up=True):
        status = {Outcome.SENT: D.SENT, Outcome.FAILED: D.FAILED, Outcome.UNKNOWN: D.UNKNOWN}.get(result.outcome)
        error = result.error or ""
        if result.outcome == Outcome.DEFERRED:
            tries = self.attempts.get(result.delivery_id, 0)
            if result.hold_until is not None:
                # Held back with its domain group: pending until then, and this was no attempt.
                return result.delivery_id, D.PENDING, provider, "", error, result.hold_until
            if give_up and tries >= settings.SEND_MAX_ATTEMPTS:
                status, error = D.FAILED, f"gave up after {tries} attempts: {error}"
            else:
                status = D.PENDING
        return result.delivery_id, status, provider, result.message_id or "", error

    def write(self, rows, bounced_ids=(), attempt_counted=True):
        """Write (id, status, provider, message id, error[, not before]) rows with the counters they move.

        Each statement writes rows and counters together (WRITE_RESULTS), so the counters equal the
        rows at every commit. Rows this claim no longer owns are offered to LATE_RESULTS, in a
        statement of its own so that it sees what the sweep committed meanwhile. A refusal of a
        dead address is noted (`held`); `settle_held_refusals` decides about its suppression at the
        batch's end. A crash before then suppresses nobody: when unsure, do not suppress.
        """
        rows = [row for row in rows if row[0] not in self.recorded]
        if not rows:
            return
        # Outbound webhooks get their delivery events in the same transaction, only while an endpoint wants them.
        webhooks = bool(webhook_events.subscribed_types() & RESULT_EVENTS)
        with transaction.atomic() if bounced_ids or webhooks else nullcontext():
            written = run_prepared(WRITE_RESULTS, {**_columns(rows), **self._owned(campaign=self.campaign_id),
                                                   "counted": attempt_counted}).fetchall()
            if webhooks:
                webhook_events.record_delivery_results([pk for pk, status in written if status != D.PENDING])
            corrected = []
            if len(written) < len(rows):
                owned = {pk for pk, _ in written}
                late = [row for row in rows if row[0] not in owned and row[1] in (D.SENT, D.FAILED)]
                if late:
                    corrected = run_prepared(LATE_RESULTS, {**_columns(late), "campaign": self.campaign_id}).fetchall()
                    if corrected:
                        logger.warning("Campaign %s: %d late results recorded for rows the sweep had marked "
                                       "unknown", self.campaign_id, len(corrected))
            if bounced_ids:
                done = {pk for pk, status in [*written, *corrected] if status == D.FAILED}
                self.held.update(pk for pk in bounced_ids if pk in done)
        self.recorded.update(row[0] for row in rows)
        self.report.add(LedgerReport.of(status for _, status in written))
        self.report.add(LedgerReport.of(status for _, status in corrected))


def _columns(rows):
    ids, statuses, providers, message_ids, errors, holds = (
        list(c) for c in zip(*(row if len(row) == 6 else (*row, None) for row in rows)))
    # Plain str for the status: psycopg would adapt a TextChoices member by its Enum name.
    return {"ids": ids, "statuses": [str(s) for s in statuses], "providers": providers,
            "message_ids": message_ids, "errors": errors, "holds": holds}


class LedgerReport:
    def __init__(self, sent=0, failed=0, unknown=0, retrying=0, skipped=0):
        self.sent, self.failed, self.unknown, self.retrying, self.skipped = sent, failed, unknown, retrying, skipped

    @classmethod
    def of(cls, statuses):
        report = cls()
        for status in statuses:
            if status == D.SENT:
                report.sent += 1
            elif status == D.FAILED:
                report.failed += 1
            elif status == D.UNKNOWN:
                report.unknown += 1
            elif status == D.PENDING:
                report.retrying += 1
            elif status == D.SKIPPED:
                report.skipped += 1
        return report

    def add(self, other):
        self.sent += other.sent
        self.failed += other.failed
        self.unknown += other.unknown
        self.retrying += other.retrying
        self.skipped += other.skipped


def suppress_held(campaign_id, delivery_ids=None):
    """Suppress, as bounced, the addresses of the campaign's held refusals (those of DELIVERY_IDS, or all
    of them) and release them. Campaign first, then the rows: the lock order of every writer.
    Returns the addresses newly suppressed."""
    with transaction.atomic():
        Campaign.lock([campaign_id])
        rows = DeliveryLog.objects.filter(campaign_id=campaign_id, status=D.FAILED, suppression_held=True)
        if delivery_ids is not None:
            rows = rows.filter(pk__in=list(delivery_ids))
        emails = list(rows.values_list("email", flat=True))
        rows.update(suppression_held=False)
        return suppress_bounced(campaign_id, emails)


def suppress_bounced(campaign_id, emails):
    return suppression.suppress_many((email, Suppression.Reason.BOUNCED, "smtp 5xx at send time", campaign_id)
                                     for email in emails)


# --- counters == rows -------------------------------------------------------------------------------

COUNTERS = {"sent_count": D.SENT, "failed_count": D.FAILED, "skipped_count": D.SKIPPED,
            "unknown_count": D.UNKNOWN}

ROW_COUNTS = """
SELECT status, count(*) FROM campaigns_deliverylog WHERE campaign_id = %s GROUP BY status
"""


@dataclass(frozen=True)
class Drift:
    campaign_id: int
    counter: str
    stored: int
    rows: int

    def __str__(self):
        return f"Campaign #{self.campaign_id}: {self.counter} is {self.stored}, the rows say {self.rows}"


def check_counters(campaign_ids=None, fix=False):
    """Recompute each campaign's counters from its delivery rows; return the drift found (fixed with FIX).

    Each campaign row is locked first and its rows counted after, so a batch writing concurrently is
    either counted in full (it committed) or not at all (its counter update waits for the lock).
    """
    if campaign_ids is None:
        campaign_ids = Campaign.objects.order_by("pk").values_list("pk", flat=True)
    drift = []
    for campaign_id in campaign_ids:
        with transaction.atomic():
            stored = (Campaign.objects.select_for_update().filter(pk=campaign_id)
                      .values(*COUNTERS).first())
            if stored is None:
                continue
            with connection.cursor() as cursor:
                cursor.execute(ROW_COUNTS, [campaign_id])
                rows = dict(cursor.fetchall())
            found = [Drift(campaign_id, counter, stored[counter], rows.get(status, 0))
                     for counter, status in COUNTERS.items() if stored[counter] != rows.get(status, 0)]
            if found and fix:
                Campaign.objects.filter(pk=campaign_id).update(**{d.counter: d.rows for d in found})
                logger.warning("Campaign %s: counters corrected from the rows: %s", campaign_id,
                               ", ".join(f"{d.counter} {d.stored} -> {d.rows}" for d in found))
        drift += found
    return drift


# --- evidence wins ------------------------------------------------------------------------------------

# Provider events that prove what happened to a delivery settle an `unknown` row: proof of sending
# (processed, delivered, open, click, bounce ...) makes it `sent`, a drop makes it `failed`. When
# events of both kinds arrive for a row, `sent` wins (the mail left).
SETTLE_UNKNOWN = """
WITH v AS (
    SELECT DISTINCT ON (id) id, status, note
    FROM unnest(%(ids)s::bigint[], %(statuses)s::text[], %(notes)s::text[]) AS e(id, status, note)
    ORDER BY id, status DESC
), settled AS (
    UPDATE campaigns_deliverylog AS d
    SET status = v.status, last_error = v.note, updated_at = now(),
        sent_at = CASE WHEN v.status = 'sent' THEN coalesce(d.sent_at, now()) ELSE d.sent_at END
    FROM v WHERE d.id = v.id AND d.status = 'unknown'
    RETURNING d.campaign_id, d.status
)
SELECT campaign_id, count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status = 'failed')
FROM settled GROUP BY campaign_id ORDER BY campaign_id
"""

# Rows whose evidence is already on the row (an event's timestamp) but that are still unknown.
UNKNOWN_WITH_EVIDENCE = """
SELECT id, CASE WHEN delivered_at IS NOT NULL THEN 'delivered' WHEN opened_at IS NOT NULL THEN 'opened'
                WHEN machine_opened_at IS NOT NULL THEN 'opened (by a machine)' WHEN clicked_at IS NOT NULL THEN 'clicked' WHEN bounced_at IS NOT NULL THEN 'bounced'
                WHEN complained_at IS NOT NULL THEN 'complained' ELSE 'unsubscribed' END
FROM campaigns_deliverylog
WHERE campaign_id = %s AND status = 'unknown'
  AND (delivered_at IS NOT NULL OR opened_at IS NOT NULL OR machine_opened_at IS NOT NULL
       OR clicked_at IS NOT NULL OR bounced_at IS NOT NULL
       OR complained_at IS NOT NULL OR unsubscribed_at IS NOT NULL)
"""


def settle_unknown(outcomes):
    """Settle `unknown` rows from evidence: OUTCOMES is [(delivery id, 'sent' | 'failed', note)].

    Runs in the caller's transaction (it must be in one: the campaigns are locked first); counters
    move with the rows. Returns the rows settled."""
    outcomes = list(outcomes)
    if not outcomes:
        return 0
    ids, statuses, notes = (list(column) for column in zip(*outcomes))
    Campaign.lock_for_deliveries(ids)  # campaign, then rows: the lock order of every writer
    with connection.cursor() as cursor:
        cursor.execute(SETTLE_UNKNOWN, {"ids": ids, "statuses": statuses, "notes": notes})
        settled = cursor.fetchall()
    for campaign_id, sent, failed in settled:
        Campaign.objects.filter(pk=campaign_id).update(
            sent_count=F("sent_count") + sent, failed_count=F("failed_count") + failed,
            unknown_count=F("unknown_count") - sent - failed)
        logger.info("Campaign %s: %d unknown deliveries settled by provider evidence (sent=%d failed=%d)",
                    campaign_id, sent + failed, sent, failed)
    return sum(sent + failed for _, sent, failed in settled)


def settle_unknown_with_evidence(campaign_id):
    """Settle the campaign's unknown rows that already carry an event's timestamp (they were sent)."""
    with connection.cursor() as cursor:
        cursor.execute(UNKNOWN_WITH_EVIDENCE, [campaign_id])
        rows = cursor.fetchall()
    return settle_unknown([(pk, D.SENT, f"sent: the provider reported it {kind}") for pk, kind in rows])


# A start that made at least this many delivery rows ANALYZEs the table right after it commits.
ANALYZE_AFTER_ROWS = 10_000


def refresh_statistics(created_rows):
    """ANALYZE the delivery logs after a start that made CREATED_ROWS of them, when that is many.

    Until autovacuum gets to it (a minute or more later) the planner believes the new campaign has
    next to no rows: the admin's delivery-log list of
    that campaign (`ORDER BY id DESC LIMIT 50`) then read all of them through (campaign, status, id) and
    sorted them: 6.6 s at 1M rows instead of 0.1 ms walking the primary key backwards (issue 26).
    SKIP_LOCKED: if autovacuum is already at the table it is about to do the same. Returns whether it ran.
    """
    if created_rows < ANALYZE_AFTER_ROWS:
        return False
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE (SKIP_LOCKED) {DeliveryLog._meta.db_table}")
    return True
