"""What every mail provider shares: the batch it is given, the results it returns, its typed errors,
and the fixed pipeline (throttle, build payload, deliver, parse response) that each provider fills in.

The shape follows django-anymail's backends/base.py: the base class runs the pipeline, one small
subclass per provider implements its steps, and errors carry the payload and the response.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from campaigns.exceptions import ProviderError

if TYPE_CHECKING:
    from campaigns.message.rendering import CompiledCampaign

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingMessage:
    """One recipient of a batch."""

    delivery_id: int
    email: str
    # Merge values: email, first_name, last_name, unsubscribe_url and every imported column.
    context: dict


@dataclass(frozen=True)
class Batch:
    campaign_id: int
    from_email: str  # may be 'Name <addr>'
    reply_to: str  # may be ''
    compiled: "CompiledCampaign"
    messages: list[OutgoingMessage]
    categories: tuple[str, ...] = ()
    # Open/click tracking for the SMTP path (campaigns.message.click_tracking.Tracking), when the campaign wants it.
    tracking: Any = None
    # The claim's record of its rows (campaigns.sending.ledger.BatchLedger), or None outside a
    # campaign (test sends): providers tell it when a call begins and, on SMTP, results as they go.
    ledger: Any = None
    # How long the batch may still wait for per-second rates (campaigns.sending.ratelimit.RateWaitBudget),
    # shared by its sends; None: as long as it takes.
    rate_wait: Any = None
    # The receiving domain groups' limits and holds (campaigns.sending.domain_groups.DomainThrottle), or
    # None: SMTP paces each group's recipients and holds a group back when its servers defer us.
    domains: Any = None

    def with_messages(self, messages):
        return Batch(self.campaign_id, self.from_email, self.reply_to, self.compiled, list(messages),
                     self.categories, self.tracking, self.ledger, self.rate_wait, self.domains)


class Outcome(str, Enum):
    SENT = "sent"  # accepted by the provider
    FAILED = "failed"  # permanently refused, with a reason
    DEFERRED = "deferred"  # certainly not sent; try again later
    UNKNOWN = "unknown"  # the provider may or may not have accepted it: never re-sent automatically


@dataclass(frozen=True)
class DeliveryResult:
    delivery_id: int
    outcome: Outcome
    message_id: str = ""
    error: str = ""
    bounced: bool = False  # permanent 5xx for the address at SMTP time
    # DEFERRED with its domain group held back (a 421 or 4.7.x from its servers, or the group's limit):
    # pending again, not before this time, and no attempt used.
    hold_until: Any = None


class Headers(dict):
    """HTTP headers, looked up without regard to case (RFC 9110 5.1: field names are case-insensitive)."""

    def __init__(self, items=()):
        super().__init__((str(name).lower(), value) for name, value in dict(items).items())

    def __getitem__(self, name):
        return super().__getitem__(name.lower())

    def __contains__(self, name):
        return super().__contains__(str(name).lower())

    def get(self, name, default=None):
        return super().get(name.lower(), default)


@dataclass(frozen=True)
class ProviderResponse:
    status: int | None = None
    headers: Headers = field(default_factory=Headers)
    body: Any = None


class Provider(ABC):
    name: str

    @abstractmethod
    def is_configured(self) -> bool:
        ...

    def send_batch(self, batch: Batch) -> list[DeliveryResult]:
        """One attempt at the whole batch: one result per message, in order, or a ProviderError.

        `deliver` paces itself and calls `call_begins` at the last moment before bytes leave; a
        ProviderError means the messages without a result in it were not accepted, so their marks are
        cleared again before any backoff.
        """
        if not batch.messages:
            return []
        payload = self.build_payload(batch)
        try:
            response = self.deliver(batch, payload)
        except ProviderError as error:
            if batch.ledger is not None:
                settled = {result.delivery_id for result in error.results}
                batch.ledger.call_ended([m.delivery_id for m in batch.messages if m.delivery_id not in settled])
            raise
        results = self.parse_response(batch, payload, response)
        if len(results) != len(batch.messages):
            raise AssertionError(f"{self.name} returned {len(results)} results for {len(batch.messages)} messages")
        return results

    @staticmethod
    def call_begins(batch: Batch, messages):
        """Record that the call for MESSAGES begins now; returns those this batch's claim still owns.

        Call it after every wait (rate limit, backoff), immediately before the bytes leave.
        """
        if batch.ledger is None:
            return list(messages)
        owned = batch.ledger.call_began([m.delivery_id for m in messages])
        return [m for m in messages if m.delivery_id in owned]

    @abstractmethod
    def build_payload(self, batch: Batch):
        ...

    @abstractmethod
    def deliver(self, batch: Batch, payload):
        ...

    @abstractmethod
    def parse_response(self, batch: Batch, payload, response) -> list[DeliveryResult]:
        ...


def ascii_domain(address):
    """The address with its domain in IDNA (A-label) form, which every server and API takes."""
    local, _, domain = address.rpartition("@")
    return address if domain.isascii() else f"{local}@{domain.encode('idna').decode('ascii')}"


def list_unsubscribe_headers(unsubscribe_url):
    """RFC 8058 one-click unsubscribe headers, plus a mailto: when UNSUBSCRIBE_MAILTO is set."""
    from django.conf import settings

    targets = [f"<{unsubscribe_url}>"] if unsubscribe_url else []
    if settings.UNSUBSCRIBE_MAILTO:
        targets.append(f"<mailto:{settings.UNSUBSCRIBE_MAILTO}?subject=unsubscribe>")
    if not targets:
        return {}
    headers = {"List-Unsubscribe": ", ".join(targets)}
    if unsubscribe_url:
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers
