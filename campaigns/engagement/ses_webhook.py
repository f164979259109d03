"""Amazon SES events through Amazon SNS: verify the SNS message (campaigns.engagement.sns),
confirm a subscription, or apply the SES event inside a notification.

SES publishes the same JSON through a configuration set's event destination ("eventType") and through
an identity's feedback notifications ("notificationType"); both are read here. Bounce, Complaint,
Delivery, DeliveryDelay and Send are applied; other event types (Open, Click, Reject, ...) are
counted as ignored. Each recipient of an event becomes one campaigns.engagement.provider_events.ProviderEvent,
with the id "ses:<SNS MessageId>:<n>", so a retried or replayed SNS message changes nothing.

Matching: our SMTP messages carry X-Campaign-ID and X-Delivery-ID headers
(campaigns.sending.providers.smtp), which SES returns in `mail.headers` (always with event publishing;
with feedback notifications when "Include original headers" is on); `mail.tags` campaign_id and
delivery_id, when a deployment sets them, come first. Else the Message-ID header and the address.

Bounces mark the delivery bounced; only a Permanent bounce suppresses the address (Transient and
Undetermined ones do not). A bounce or complaint because the address is on SES's account suppression
list means SES did not send the message: the address is suppressed and an unknown delivery settled as
failed, but no bounce or complaint is counted. A complaint of feedback type "not-spam" is ignored.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from campaigns.engagement import provider_events, sns
from campaigns.engagement.provider_events import ProviderEvent, as_id
from campaigns.exceptions import WebhookRefused
from campaigns.models import Suppression

SOURCE = "amazon ses"
# SES's bounce and complaint subtypes for an address on the account-level suppression list
NOT_SENT_SUBTYPES = {"Suppressed", "OnAccountSuppressionList"}


def _refuse_constant(name):
    raise ValueError(f"{name} is not a number")


def _dict(value):
    return value if isinstance(value, dict) else {}


def _list(value):
    return value if isinstance(value, list) else []


def _text(value, limit=500):
    return value[:limit] if isinstance(value, str) else ""


def _epoch(text, default):
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return default
    return moment.replace(tzinfo=moment.tzinfo or timezone.utc).timestamp()


def _first(values):
    values = _list(values)
    return values[0] if values else None


class _Mail:
    """What an event's `mail` object says about the message it is about."""

    def __init__(self, mail):
        headers = {}
        for header in _list(mail.get("headers")):
            header = _dict(header)
            if isinstance(header.get("name"), str) and isinstance(header.get("value"), str):
                headers.setdefault(header["name"].lower(), header["value"])
        tags = _dict(mail.get("tags"))
        self.delivery_id = as_id(_first(tags.get("delivery_id")) or headers.get("x-delivery-id"))
        self.campaign_id = as_id(_first(tags.get("campaign_id")) or headers.get("x-campaign-id"))
        self.message_id = _text(headers.get("message-id") or _dict(mail.get("commonHeaders")).get("messageId"))
        self.timestamp = mail.get("timestamp")
        self.destination = [address for address in _list(mail.get("destination")) if isinstance(address, str)]


def _recipients(entries):
    """(address, entry) for each recipient object of a bounce, complaint or delay."""
    for entry in _list(entries):
        entry = _dict(entry)
        if isinstance(entry.get("emailAddress"), str):
            yield entry["emailAddress"], entry


def _per_recipient(kind, event, mail, fallback_time):
    """(address, ProviderEvent fields) for each recipient the event is about."""
    if kind == "Send":
        at = _epoch(mail.timestamp, fallback_time)
        for address in mail.destination:
            yield address, dict(timestamp=at, evidence=("sent", "sent: Amazon SES reported it Send"))
    elif kind == "Delivery":
        delivery = _dict(event.get("delivery"))
        at = _epoch(delivery.get("timestamp"), fallback_time)
        for address in _list(delivery.get("recipients")):
            if isinstance(address, str):
                yield address, dict(timestamp=at, first="delivered",
                                    evidence=("sent", "sent: Amazon SES reported it Delivery"))
    elif kind == "DeliveryDelay":
        delay = _dict(event.get("deliveryDelay"))
        at = _epoch(delay.get("timestamp"), fallback_time)
        for address, entry in _recipients(delay.get("delayedRecipients")):
            note = f"Amazon SES delayed ({_text(delay.get('delayType'))}): {_text(entry.get('diagnosticCode'))}"
            yield address, dict(timestamp=at, note=note,
                                evidence=("sent", "sent: Amazon SES reported it DeliveryDelay"))
    elif kind == "Bounce":
        bounce = _dict(event.get("bounce"))
        at = _epoch(bounce.get("timestamp"), fallback_time)
        bounce_type, subtype = _text(bounce.get("bounceType")), _text(bounce.get("bounceSubType"))
        not_sent = subtype in NOT_SENT_SUBTYPES
        for address, entry in _recipients(bounce.get("bouncedRecipients")):
            note = f"Amazon SES {bounce_type} bounce ({subtype}): {_text(entry.get('diagnosticCode'))}"
            yield address, dict(timestamp=at, note=note, first=None if not_sent else "bounced",
                                evidence=("failed", note) if not_sent else ("sent", "sent: Amazon SES reported it Bounce"),
                                suppression=Suppression.Reason.BOUNCED if bounce_type == "Permanent" else None)
    elif kind == "Complaint":
        complaint = _dict(event.get("complaint"))
        if complaint.get("complaintFeedbackType") == "not-spam":
            return
        at = _epoch(complaint.get("timestamp"), fallback_time)
        not_sent = complaint.get("complaintSubType") in NOT_SENT_SUBTYPES
        note = "Amazon SES: the address is on the account's suppression list (complaint)"
        for address, _ in _recipients(complaint.get("complainedRecipients")):
            yield address, dict(timestamp=at, first=None if not_sent else "complained",
                                note=note if not_sent else None,
                                evidence=("failed", note) if not_sent else ("sent", "sent: Amazon SES reported it Complaint"),
                                suppression=Suppression.Reason.COMPLAINED)


def to_provider_events(sns_message_id: str, event: dict, received_at: float) -> list[ProviderEvent]:
    """The ProviderEvents of one SES event (one per recipient); [] for a type we do not use."""
    kind = event.get("eventType", event.get("notificationType"))
    if not isinstance(kind, str):
        raise WebhookRefused("the SES event has no eventType", status=400)
    mail = _Mail(_dict(event.get("mail")))
    return [ProviderEvent(event_id=f"ses:{sns_message_id}:{index}", email=address, delivery_id=mail.delivery_id,
                          campaign_id=mail.campaign_id, message_id=mail.message_id,
                          source=f"{SOURCE}: {kind}", **fields)
            for index, (address, fields) in enumerate(_per_recipient(kind, event, mail, received_at))]


def parse_event(text: str) -> dict:
    """The SES event an SNS notification's Message holds, or WebhookRefused (400)."""
    try:
        event = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise WebhookRefused("the notification's Message is not an SES event", status=400) from None
    if not isinstance(event, dict):
        raise WebhookRefused("the notification's Message is not an SES event", status=400)
    return event


def handle(body: bytes) -> dict:
    """Verify and act on one SNS request: what was done, as JSON-able dict; WebhookRefused otherwise."""
    message = sns.parse(body)
    sns.verify(message)
    if message["Type"] == "SubscriptionConfirmation":
        sns.confirm_subscription(message)
        return {"confirmed": message["TopicArn"]}
    if message["Type"] == "UnsubscribeConfirmation":
        return {"unsubscribed": message["TopicArn"]}  # nothing to do: SNS stops sending
    events = to_provider_events(message["MessageId"], parse_event(message["Message"]), time.time())
    return provider_events.apply_events(events, ignored=0 if events else 1).as_dict()
