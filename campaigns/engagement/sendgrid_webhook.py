"""SendGrid Event Webhook: verify a request, then apply its events in a few set-based statements.

Verification: SendGrid signs the timestamp header followed by the raw body (ECDSA P-256, SHA-256);
the sendgrid library's EventWebhook helper checks it against SENDGRID_WEBHOOK_PUBLIC_KEY. A request
older than MAX_AGE_SECONDS (or from the future) is refused even when signed, which bounds replays;
inside that window the event ids de-duplicate.

Applying: each event becomes a campaigns.engagement.provider_events.ProviderEvent (the path every provider's
events take: de-duplicated by sg_event_id, set-based, counters counting recipients), matched by the
custom_args SendGrid echoes back (delivery_id, checked against campaign_id), else by sg_message_id (its
part before the first dot is the X-Message-Id we stored) and the address. Hard bounces, spam reports
and unsubscribes become suppressions.
"""

from __future__ import annotations

import binascii
import functools
import json
import logging
import math
import time

from cryptography.exceptions import UnsupportedAlgorithm
from django.conf import settings
from sendgrid.helpers.eventwebhook import EventWebhook

from campaigns.engagement import opens_and_clicks, provider_events
from campaigns.engagement.provider_events import EventsReport, ProviderEvent, as_id
from campaigns.exceptions import WebhookRefused
from campaigns.models import Suppression

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_AGE_SECONDS = 600
MAX_FUTURE_SECONDS = 300
SOURCE = "sendgrid webhook"

# event -> the first occurrence it records (campaigns.engagement.provider_events.FIRST_OCCURRENCE)
FIRST_OCCURRENCE = {
    "delivered": "delivered",
    "open": "opened",
    "click": "clicked",
    "bounce": "bounced",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
# events whose reason is worth keeping on the delivery log (until it is delivered)
NOTED = {"deferred", "dropped", "bounce"}
KNOWN_EVENTS = set(FIRST_OCCURRENCE) | NOTED | {"processed"}
# events that prove what happened to a delivery whose outcome was unknown (campaigns.sending.ledger)
PROOF_OF_SENDING = {"processed", "deferred", "delivered", "open", "click", "bounce", "spamreport",
                    "unsubscribe", "group_unsubscribe"}
PROOF_OF_FAILURE = {"dropped"}
# SendGrid's reasons for dropping a message to an address already on its own lists
DROP_REASONS = {"Bounced Address": Suppression.Reason.BOUNCED,
                "Spam Reporting Address": Suppression.Reason.COMPLAINED,
                "Unsubscribed Address": Suppression.Reason.UNSUBSCRIBED}


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


def _evidence(event):
    kind = event["event"]
    if kind in PROOF_OF_SENDING:
        return "sent", f"sent: SendGrid reported it {kind}"
    if kind in PROOF_OF_FAILURE:
        return "failed", _note(event)
    return None


def to_provider_event(event) -> ProviderEvent:
    """A checked SendGrid event (a known kind, with an sg_event_id) in the terms of campaigns.engagement.provider_events."""
    kind = event["event"]
    return ProviderEvent(
        event_id=event["sg_event_id"],
        timestamp=_timestamp(event),
        email=str(event.get("email") or ""),
        delivery_id=as_id(event.get("delivery_id")),
        campaign_id=as_id(event.get("campaign_id")),
        # sg_message_id's part before the first dot is the X-Message-Id we stored
        message_id=str(event.get("sg_message_id") or "").split(".", 1)[0],
        first=FIRST_OCCURRENCE.get(kind),
        note=_note(event) if kind in NOTED else None,
        evidence=_evidence(event),
        suppression=_suppression_reason(event),
        source=f"{SOURCE}: {kind}",
        # Opens: Apple Mail Privacy Protection's, or a proxy's by its user agent (campaigns.engagement.opens_and_clicks).
        machine=kind == "open" and (event.get("sg_machine_open") is True
                                    or opens_and_clicks.is_machine_user_agent(_text(event.get("useragent")))),
        url=_text(event.get("url"), opens_and_clicks.URL_LIMIT) if kind == "click" else "",
    )


def apply_events(events: list) -> EventsReport:
    """Apply one webhook delivery's events; safe to call again with the same events."""
    usable = [event for event in events
              if isinstance(event, dict) and isinstance(event.get("sg_event_id"), str) and event["sg_event_id"]
              and event.get("event") in KNOWN_EVENTS]
    return provider_events.apply_events([to_provider_event(event) for event in usable],
                                        received=len(events), ignored=len(events) - len(usable))
