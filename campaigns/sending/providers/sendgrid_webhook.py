"""SendGrid Event Webhook: verify a request, then apply its events in a few set-based statements.

Verification: SendGrid signs the timestamp header followed by the raw body (ECDSA P-256, SHA-256);
the sendgrid library's EventWebhook helper checks it against SENDGRID_WEBHOOK_PUBLIC_KEY. A request
older than MAX_AGE_SECONDS (or from the future) is refused even when signed, which bounds replays;
inside that window the event ids de-duplicate.

Applying a batch, in one transaction:
1. record the batch's sg_event_ids (INSERT ... ON CONFLICT DO NOTHING RETURNING): only ids not seen
   before go on, so a retried or replayed delivery counts once;
2. match events to delivery logs by the custom_args SendGrid echoes back (delivery_id, checked against
   campaign_id), else by sg_message_id (its part before the first dot is the X-Message-Id we stored)
   and the address;
3. one conditional UPDATE per kind of event sets the first timestamp (`... WHERE bounced_at IS NULL`),
   so counters count recipients, not events: a recipient who opens five times is one open; opens
   (a person's or a machine's, `sg_machine_open`) and clicks (per link, per hour) go through
   campaigns.engagement in the same way;
4. hard bounces, spam reports and unsubscribes become suppressions; campaign counters go up by the
   number of rows that actually changed, in one statement.
"""

from __future__ import annotations

import binascii
import functools
import json
import logging
import math
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from django.conf import settings
from django.db import connection, transaction
from sendgrid.helpers.eventwebhook import EventWebhook

from campaigns import engagement
from campaigns.exceptions import WebhookRefused
from campaigns.models import Suppression
from campaigns.sending.ledger import settle_unknown
from campaigns.suppression import normalize, suppress_many

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_AGE_SECONDS = 600
MAX_FUTURE_SECONDS = 300
# SendGrid retries a failed delivery for up to 24 hours; ids are kept well beyond that.
EVENT_ID_RETENTION_DAYS = 7
SOURCE = "sendgrid webhook"

# event -> (DeliveryLog timestamp, Campaign counter) set by its first occurrence per recipient
FIRST_OCCURRENCE = {
    "delivered": ("delivered_at", "delivered_count"),
    "bounce": ("bounced_at", "bounced_count"),
    "spamreport": ("complained_at", "complained_count"),
    "unsubscribe": ("unsubscribed_at", "unsubscribed_count"),
    "group_unsubscribe": ("unsubscribed_at", "unsubscribed_count"),
}
# events whose reason is worth keeping on the delivery log (until it is delivered)
NOTED = {"deferred", "dropped", "bounce"}
# Opens and clicks go through campaigns.engagement (person or machine, clicks per link, hourly counts).
ENGAGEMENT_EVENTS = {"open", "click"}
KNOWN_EVENTS = set(FIRST_OCCURRENCE) | ENGAGEMENT_EVENTS | NOTED | {"processed"}
# events that prove what happened to a delivery whose outcome was unknown (campaigns.sending.ledger)
PROOF_OF_SENDING = {"processed", "deferred", "delivered", "open", "click", "bounce", "spamreport",
                    "unsubscribe", "group_unsubscribe"}
PROOF_OF_FAILURE = {"dropped"}
# SendGrid's reasons for dropping a message to an address already on its own lists
DROP_REASONS = {"Bounced Address": Suppression.Reason.BOUNCED,
                "Spam Reporting Address": Suppression.Reason.COMPLAINED,
                "Unsubscribed Address": Suppression.Reason.UNSUBSCRIBED}
COUNTERS = ("delivered_count", "opened_count", "machine_opened_count", "clicked_count", "bounced_count",
            "complained_count", "unsubscribed_count")


# --- verification ----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _public_key(key):
    return EventWebhook().convert_public_key_to_ecdsa(key)


def verify(body: bytes, signature: str | None, timestamp: str | None, now: float | None = None) -> None:
    """Raise WebhookRefused unless BODY was signed by SendGrid's key within the last MAX_AGE_SECONDS."""
    key = settings.SENDGRID_WEBHOOK_PUBLIC_KEY
    if not key:
        raise WebhookRefused("webhook verification key not configured (SENDGRID_WEBHOOK_PUBLIC_KEY)")
    if not signature or not timestamp:
        raise WebhookRefused("unsigned request")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookRefused("malformed timestamp") from None
    age = (time.time() if now is None else now) - sent_at
    if age > MAX_AGE_SECONDS:
        raise WebhookRefused("stale timestamp")
    if age < -MAX_FUTURE_SECONDS:
        raise WebhookRefused("timestamp in the future")
    try:
        public_key = _public_key(key)
    except (ValueError, UnsupportedAlgorithm):
        logger.error("SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid base64 ECDSA public key")
        raise WebhookRefused("webhook verification key is invalid") from None
    try:
        valid = EventWebhook().verify_signature(body.decode("utf-8"), signature, timestamp, public_key)
    except (UnicodeDecodeError, binascii.Error, ValueError):
        valid = False
    if not valid:
        raise WebhookRefused("bad signature")


# The shape of a signed body, checked before anything is applied. SendGrid posts an array of flat
# objects whose values are strings and numbers, a few of them small arrays or objects (category,
# pool); anything deeper, longer or of another type is refused whole with a 400, so a malformed
# body can neither raise nor store a value no event could hold.
MAX_EVENTS = 10_000
MAX_DEPTH = 4  # the array, an event, a value (category, pool), one level inside it
MAX_ITEMS = 100  # entries of a nested array or object (an event's own fields: MAX_KEYS)
MAX_KEYS = 200  # fields of one event (custom args included)
# 0001-01-01 to 9999-12-31, what PostgreSQL's to_timestamp() and Python's datetime can hold
MAX_TIMESTAMP = 253402300799
STRING_FIELDS = ("event", "sg_event_id", "sg_message_id", "email", "type", "reason", "response", "url")
ID_FIELDS = ("delivery_id", "campaign_id")


def _refuse_constant(name):
    raise ValueError(f"{name} is not a number")


def _finite_float(text):
    number = float(text)
    if not math.isfinite(number):  # e.g. 1e999, which float() reads as infinity
        raise ValueError(f"{text} is not a finite number")
    return number


def _check_shape(events):
    """Raise WebhookRefused unless EVENTS is nested at most MAX_DEPTH deep, with bounded sizes."""
    pending = [(events, 1)]
    while pending:  # no recursion, whatever the body
        value, depth = pending.pop()
        if isinstance(value, (list, dict)):
            if depth > MAX_DEPTH:
                raise WebhookRefused("events are nested too deeply", status=400)
            limit = MAX_EVENTS if depth == 1 else MAX_KEYS if depth == 2 else MAX_ITEMS
            if len(value) > limit:
                raise WebhookRefused("too many events or values in one request", status=400)
            pending.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))


def _check_event(event):
    if not isinstance(event, dict):
        raise WebhookRefused("every event must be a JSON object", status=400)
    for name in STRING_FIELDS:
        if name in event and not isinstance(event[name], str):
            raise WebhookRefused(f"{name} must be a string", status=400)
    for name in ID_FIELDS:
        if name in event and (isinstance(event[name], bool) or not isinstance(event[name], (str, int))):
            raise WebhookRefused(f"{name} must be a string or an integer", status=400)
    if "timestamp" in event:
        timestamp = event["timestamp"]
        if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
            raise WebhookRefused("timestamp must be a number", status=400)
        if not 0 <= timestamp <= MAX_TIMESTAMP:
            raise WebhookRefused("timestamp out of range", status=400)


def parse(body: bytes) -> list:
    """The events of a verified body, or WebhookRefused (400) when it is not a well-formed batch."""
    try:
        events = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise WebhookRefused("events are nested too deeply", status=400) from None
    except ValueError:  # also UnicodeDecodeError, and integers too long to read
        raise WebhookRefused("body is not JSON", status=400) from None
    if not isinstance(events, list):
        raise WebhookRefused("body is not a JSON array of events", status=400)
    _check_shape(events)
    for event in events:
        _check_event(event)
    return events


# --- applying -----------------------------------------------------------------------------------------

@dataclass
class EventsReport:
    received: int = 0
    applied: int = 0  # new events matched to a delivery log
    duplicates: int = 0  # already applied earlier (retry or replay)
    unmatched: int = 0  # new events of no delivery of ours (suppressions still apply)
    ignored: int = 0  # unknown event types, or no sg_event_id
    suppressed: int = 0  # addresses newly suppressed
    settled: int = 0  # unknown deliveries the events proved sent (or dropped)

    def as_dict(self):
        return asdict(self)


RECORD_EVENT_IDS = """
INSERT INTO campaigns_webhook_event (event_id)
SELECT unnest(%(ids)s::text[])
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""

# The matched rows are locked in id order up front, so two webhook requests touching the same
# recipients wait for each other instead of deadlocking; the campaign rows come last (BUMP_COUNTERS).
MATCH_BY_DELIVERY_ID = """
SELECT d.id, d.campaign_id, d.email
FROM campaigns_deliverylog d
JOIN (SELECT DISTINCT * FROM unnest(%(ids)s::bigint[], %(campaigns)s::bigint[]) AS v(id, campaign_id)) v
  ON d.id = v.id AND d.campaign_id = v.campaign_id
ORDER BY d.id
FOR UPDATE OF d
"""

MATCH_BY_MESSAGE_ID = """
SELECT v.message_id, v.email, d.id, d.campaign_id
FROM (SELECT DISTINCT * FROM unnest(%(message_ids)s::text[], %(emails)s::text[]) AS v(message_id, email)) v
JOIN campaigns_deliverylog d ON d.provider_message_id = v.message_id AND lower(d.email) = v.email
ORDER BY d.id
FOR UPDATE OF d
"""

SET_FIRST_OCCURRENCE = """
UPDATE campaigns_deliverylog AS d SET {column} = v.at
FROM (SELECT id, to_timestamp(min(ts)) AS at
      FROM unnest(%(ids)s::bigint[], %(ts)s::float8[]) AS e(id, ts) GROUP BY id) AS v
WHERE d.id = v.id AND d.{column} IS NULL
RETURNING d.campaign_id
"""

NOTE_ERRORS = """
UPDATE campaigns_deliverylog AS d SET last_error = v.note
FROM (SELECT DISTINCT ON (id) id, note FROM unnest(%(ids)s::bigint[], %(notes)s::text[]) AS e(id, note)
      ORDER BY id) AS v
WHERE d.id = v.id AND d.delivered_at IS NULL
"""

BUMP_COUNTERS = """
UPDATE campaigns_campaign AS c SET {assignments}
FROM unnest(%(campaigns)s::bigint[], {arrays}) AS v(id, {columns})
WHERE c.id = v.id
"""

PRUNE_EVENT_IDS = """
DELETE FROM campaigns_webhook_event WHERE event_id IN (
    SELECT event_id FROM campaigns_webhook_event
    WHERE received_at < now() - %(days)s * interval '1 day'
    ORDER BY received_at LIMIT 10000 FOR UPDATE SKIP LOCKED)
"""


def _int(value):
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 2 ** 63 else None


def _timestamp(event):
    value = event.get("timestamp")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else time.time()


def _text(value, limit=500):
    return str(value)[:limit] if value is not None else ""


def _note(event):
    kind = event["event"]
    if kind == "deferred":
        return f"SendGrid deferred: {_text(event.get('response'))}"
    if kind == "dropped":
        return f"SendGrid dropped: {_text(event.get('reason'))}"
    return f"SendGrid {_text(event.get('type') or 'bounce')}: {_text(event.get('reason'))}"


def _suppression_reason(event):
    kind = event["event"]
    if kind == "bounce":
        # "blocked" is a refusal of this message (reputation, content), not a dead address.
        return None if event.get("type") == "blocked" else Suppression.Reason.BOUNCED
    if kind == "spamreport":
        return Suppression.Reason.COMPLAINED
    if kind in ("unsubscribe", "group_unsubscribe"):
        return Suppression.Reason.UNSUBSCRIBED
    if kind == "dropped":
        return DROP_REASONS.get(event.get("reason"))
    return None


def apply_events(events: list) -> EventsReport:
    """Apply one webhook delivery's events; safe to call again with the same events."""
    report = EventsReport(received=len(events))
    unique = {}
    for event in events:
        event_id = event.get("sg_event_id") if isinstance(event, dict) else None
        if not isinstance(event_id, str) or not event_id or event.get("event") not in KNOWN_EVENTS:
            report.ignored += 1
        elif event_id in unique:
            report.duplicates += 1
        else:
            unique[event_id] = event
    if not unique:
        return report

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(RECORD_EVENT_IDS, {"ids": list(unique)})
        new_ids = {row[0] for row in cursor.fetchall()}
        report.duplicates += len(unique) - len(new_ids)
        new_events = [event for event_id, event in unique.items() if event_id in new_ids]
        matches = _match(cursor, new_events)
        report.applied = sum(1 for match in matches if match)
        report.unmatched = len(new_events) - report.applied

        counters = defaultdict(Counter)  # campaign id -> counter -> recipients changed
        for (column, counter), pairs in _by_first_occurrence(new_events, matches).items():
            cursor.execute(SET_FIRST_OCCURRENCE.format(column=column),
                           {"ids": [pk for pk, _ in pairs], "ts": [ts for _, ts in pairs]})
            for (campaign_id,) in cursor.fetchall():
                counters[campaign_id][counter] += 1
        # --- engagement (issue 16): after "delivered" above, which the machine-open delay rule reads.
        for campaign_id, counted in engagement.apply(cursor, *_engagement(new_events, matches)).items():
            counters[campaign_id].update(counted)
        # --- end engagement
        _note_errors(cursor, new_events, matches)
        _bump_counters(cursor, counters)
        report.settled = settle_unknown(_evidence(new_events, matches))
        report.suppressed = suppress_many(_suppressions(new_events, matches))
    _prune_event_ids()
    return report


def _match(cursor, events):
    """For each event, (delivery id, campaign id, email) of its delivery log, or None."""
    by_delivery = [(_int(e.get("delivery_id")), _int(e.get("campaign_id"))) for e in events]
    wanted = [pair for pair in by_delivery if pair[0] and pair[1]]
    found = {}
    if wanted:
        cursor.execute(MATCH_BY_DELIVERY_ID, {"ids": [p[0] for p in wanted], "campaigns": [p[1] for p in wanted]})
        found = {(pk, campaign_id): (pk, campaign_id, email) for pk, campaign_id, email in cursor.fetchall()}
    matches = [found.get(pair) for pair in by_delivery]

    # Events without our custom_args (e.g. an unsubscribe from SendGrid's own pages): by message id.
    fallback = {}
    for index, event in enumerate(events):
        message_id = str(event.get("sg_message_id") or "").split(".", 1)[0]
        if matches[index] is None and message_id and event.get("email"):
            fallback[index] = (message_id, normalize(str(event["email"])))
    if fallback:
        keys = list(set(fallback.values()))
        cursor.execute(MATCH_BY_MESSAGE_ID, {"message_ids": [k[0] for k in keys], "emails": [k[1] for k in keys]})
        by_message = {(message_id, email): (pk, campaign_id, email)
                      for message_id, email, pk, campaign_id in cursor.fetchall()}
        for index, key in fallback.items():
            matches[index] = by_message.get(key)
    return matches


def _by_first_occurrence(events, matches):
    grouped = defaultdict(list)
    for event, match in zip(events, matches):
        if match and event["event"] in FIRST_OCCURRENCE:
            grouped[FIRST_OCCURRENCE[event["event"]]].append((match[0], _timestamp(event)))
    return grouped


def _engagement(events, matches):
    """The matched open and click events as campaigns.engagement's (opens, clicks)."""
    opens, clicks = [], []
    for event, match in zip(events, matches):
        if match and event["event"] == "open":
            machine = event.get("sg_machine_open") is True or engagement.is_machine_user_agent(
                _text(event.get("useragent")))
            opens.append(engagement.Open(match[0], _timestamp(event), machine))
        elif match and event["event"] == "click":
            clicks.append(engagement.Click(match[0], _timestamp(event), _text(event.get("url"), engagement.URL_LIMIT)))
    return opens, clicks


def _note_errors(cursor, events, matches):
    notes = [(match[0], _note(event)) for event, match in zip(events, matches)
             if match and event["event"] in NOTED]
    if notes:
        cursor.execute(NOTE_ERRORS, {"ids": [n[0] for n in notes], "notes": [n[1] for n in notes]})


def _bump_counters(cursor, counters):
    if not counters:
        return
    campaigns = sorted(counters)
    params = {"campaigns": campaigns}
    for name in COUNTERS:
        params[name] = [counters[campaign_id][name] for campaign_id in campaigns]
    sql = BUMP_COUNTERS.format(
        assignments=", ".join(f"{name} = c.{name} + v.{name}" for name in COUNTERS),
        arrays=", ".join(f"%({name})s::int[]" for name in COUNTERS),
        columns=", ".join(COUNTERS),
    )
    cursor.execute(sql, params)


def _evidence(events, matches):
    for event, match in zip(events, matches):
        if not match:
            continue
        kind = event["event"]
        if kind in PROOF_OF_SENDING:
            yield match[0], "sent", f"sent: SendGrid reported it {kind}"
        elif kind in PROOF_OF_FAILURE:
            yield match[0], "failed", _note(event)


def _suppressions(events, matches):
    for event, match in zip(events, matches):
        reason = _suppression_reason(event)
        if reason is None:
            continue
        email = match[2] if match else str(event.get("email") or "")
        yield email, reason, f"{SOURCE}: {event['event']}", match[1] if match else None


def _prune_event_ids():
    """Forget ids older than any retry SendGrid makes; cheap when there is nothing to forget."""
    with connection.cursor() as cursor:
        cursor.execute(PRUNE_EVENT_IDS, {"days": EVENT_ID_RETENTION_DAYS})
