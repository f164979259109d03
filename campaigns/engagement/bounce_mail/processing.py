"""Messages from a bounce mailbox (or process_bounce_mail) read, matched and applied in one go.

Each recipient of a bounce or complaint that matches one of our deliveries becomes a ProviderEvent
with the id "mail:<message digest>:<recipient's place>:<address>", applied by campaigns.engagement.provider_events with
every other provider's events: a replayed message (read twice from a mailbox, piped twice) changes
nothing twice.
- hard bounce: the delivery is bounced and the address suppressed as bounced, with the status and
  the server's words;
- soft bounce: recorded on the delivery (soft_bounced_at, its last_error) and counted; the address is
  suppressed once SOFT_BOUNCE_LIMIT of its deliveries soft-bounced within SOFT_BOUNCE_DAYS;
- complaint (ARF): the delivery is complained and the address suppressed as complained;
- auto-replies, delayed and delivered notifications: nothing;
- unreadable: kept as an UnreadBounce (once per message), listed in the admin.
"""

from __future__ import annotations

import logging
import mailbox
import tempfile
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction

from campaigns.engagement.bounce_mail import matching, reading
from campaigns.engagement.provider_events import ProviderEvent, apply_events
from campaigns.exceptions import BounceInputError
from campaigns.models import Suppression, UnreadBounce

logger = logging.getLogger(__name__)

SOURCE = "bounce mail"
SENT_EVIDENCE = ("sent", "sent: a bounce or complaint came back by mail")


@dataclass
class MessageResult:
    """What was done with one message, in words for the command's output (ids, never addresses)."""

    label: str
    kind: str
    lines: list[str] = field(default_factory=list)
    kept_unread: bool = False

    def describe(self):
        return f"{self.label}: {self.kind}" + "".join(f"\n  {line}" for line in self.lines)


@dataclass
class ProcessReport:
    messages: list[MessageResult] = field(default_factory=list)
    events: dict = field(default_factory=dict)  # provider_events.EventsReport.as_dict()
    kept_unread: int = 0

    def summary(self):
        kinds = {}
        for message in self.messages:
            kinds[message.kind] = kinds.get(message.kind, 0) + 1
        counted = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none"
        events = self.events
        return (f"{len(self.messages)} message(s): {counted}. Events: {events.get('applied', 0)} applied, "
                f"{events.get('duplicates', 0)} already applied earlier, {events.get('suppressed', 0)} address(es) "
                f"newly suppressed; {self.kept_unread} kept unread.")


def process(messages, source: str) -> ProcessReport:
    """Apply MESSAGES, a list of (label, raw bytes); SOURCE names where they came from (an account's
    mailbox, a file). Safe to call again with the same messages."""
    report = ProcessReport()
    readings, unread = [], []
    for label, raw in messages:
        result = MessageResult(label=label, kind=reading.UNREADABLE)
        report.messages.append(result)
        if len(raw) > settings.BOUNCE_MAX_MESSAGE_BYTES:
            parsed = reading.Reading(kind=reading.UNREADABLE, digest=reading.digest_of(raw),
                                     reason=f"larger than BOUNCE_MAX_MESSAGE_BYTES ({len(raw)} bytes)")
        else:
            try:
                parsed = reading.read(raw)
            except Exception as exc:  # noqa: BLE001 - any message that breaks the reader is kept, not lost
                logger.warning("Bounce mail from %s: a message could not be parsed (%s)", source, type(exc).__name__)
                parsed = reading.Reading(kind=reading.UNREADABLE, digest=reading.digest_of(raw),
                                         reason=f"could not be parsed ({type(exc).__name__})")
        result.kind = parsed.kind
        if parsed.kind == reading.UNREADABLE:
            result.kept_unread = True
            result.lines.append(f"kept for staff (admin: unread bounce messages): {parsed.reason}")
            unread.append((parsed, raw))
        readings.append(parsed)

    matches = matching.match(readings)
    events = []
    for parsed, found, result in zip(readings, matches, report.messages):
        if parsed.kind not in (reading.BOUNCE, reading.COMPLAINT):
            if parsed.kind != reading.UNREADABLE:
                result.lines.append("nothing to do")
            continue
        for position, recipient in enumerate(parsed.recipients):
            delivery = found.get(position)
            what = recipient.describe()
            if not recipient.outcome:
                result.lines.append(f"{what}: nothing to do")
            elif delivery is None:
                result.lines.append(f"{what}: no delivery of ours matches; nothing changed")
            else:
                events.append(_event(parsed, position, recipient, delivery))
                result.lines.append(f"{what}: delivery {delivery[0]} of campaign {delivery[1]} "
                                    f"(matched by {delivery[3]}): {_effect(recipient.outcome)}")

    with transaction.atomic():
        if events:
            report.events = apply_events(events).as_dict()
        report.kept_unread = _keep(unread, source)
    logger.info("Bounce mail from %s: %s", source, report.summary())
    return report


def _event(parsed, position, recipient, delivery):
    delivery_id, campaign_id, email, _ = delivery
    detail = " ".join(part for part in (recipient.status, recipient.diagnostic) if part)
    common = dict(event_id=f"mail:{parsed.digest}:{position}:{recipient.address}", timestamp=time.time(), email=email,
                  delivery_id=delivery_id, campaign_id=campaign_id, evidence=SENT_EVIDENCE)
    if recipient.outcome == reading.HARD:
        return ProviderEvent(first="bounced", note=f"hard bounce (by mail): {detail}"[:1000],
                             suppression=Suppression.Reason.BOUNCED, source=f"{SOURCE}: {detail}"[:200], **common)
    if recipient.outcome == reading.SOFT:
        return ProviderEvent(first="soft_bounced", note=f"soft bounce (by mail): {detail}"[:1000], **common)
    return ProviderEvent(first="complained", suppression=Suppression.Reason.COMPLAINED,
                         source=f"complaint report (ARF): {recipient.diagnostic}"[:200], **common)


def _effect(outcome):
    return {reading.HARD: "bounced, address suppressed",
            reading.SOFT: "soft bounce recorded (suppressed at SOFT_BOUNCE_LIMIT)",
            reading.COMPLAINT: "complained, address suppressed"}[outcome]


def _keep(unread, source):
    """Keep unreadable messages, once each; returns how many were new."""
    rows = [UnreadBounce(source=source[:200], sender=parsed.sender[:998], subject=parsed.subject[:998],
                         reason=parsed.reason[:500], digest=parsed.digest,
                         raw=raw[:settings.BOUNCE_MAX_MESSAGE_BYTES])
            for parsed, raw in unread]
    if not rows:
        return 0
    before = UnreadBounce.objects.filter(digest__in=[row.digest for row in rows]).count()
    UnreadBounce.objects.bulk_create(rows, ignore_conflicts=True)
    return UnreadBounce.objects.filter(digest__in=[row.digest for row in rows]).count() - before


def process_files(paths, stdin=None) -> ProcessReport:
    """process_bounce_mail: each path (or "-" for STDIN, a binary stream) holds one message, or an mbox
    of several (it starts with a "From " line, as Postfix's pipe transport writes with flag F).
    Raises BounceInputError, changing nothing, when any of them cannot be read."""
    messages = []
    for path in paths:
        if path == "-":
            data = stdin.read() if stdin is not None else b""
            label = "standard input"
        else:
            try:
                with open(path, "rb") as file:
                    data = file.read()
            except OSError as exc:
                raise BounceInputError(f"{path}: {exc.strerror or exc}") from exc
            label = path
        if not data.strip():
            raise BounceInputError(f"{label}: empty, no message to read")
        messages += _split(label, data)
    return process(messages, source="process_bounce_mail")


def _split(label, data):
    """(label, raw message) for each message of DATA: one message, or an mbox."""
    if not data.startswith(b"From "):
        return [(label, data)]
    with tempfile.NamedTemporaryFile(suffix=".mbox") as file:
        file.write(data)
        file.flush()
        box = mailbox.mbox(file.name, create=False)
        try:
            raws = [box.get_bytes(key) for key in box.keys()]
        finally:
            box.close()
    if len(raws) == 1:
        return [(label, raws[0])]
    return [(f"{label} #{number}", raw) for number, raw in enumerate(raws, 1)]
