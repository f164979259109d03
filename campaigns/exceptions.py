"""Every exception the campaigns app raises, in one module (as django-anymail keeps its own).

Refusals meant for staff carry one sentence to show as it is. Provider errors carry what the sending
pipeline needs to decide what happens to a batch's rows (campaigns.sending.chain).
"""

from __future__ import annotations

# --- campaigns and their content --------------------------------------------------------------------

class IllegalTransition(Exception):
    """Raised when a campaign is not in a state the requested change may start from (campaigns.states)."""

    def __init__(self, campaign_id, transition, actual_status):
        self.campaign_id = campaign_id
        self.transition = transition
        self.actual_status = actual_status
        super().__init__(transition.refusal(campaign_id, actual_status))


class CampaignError(Exception):
    """An action that cannot apply to this campaign, with a message for staff (campaigns.services)."""


class SegmentError(CampaignError):
    """A segment filter names an unknown column or operator, or a value of the wrong kind (campaigns.audience.segments)."""


class MergeTagError(ValueError):
    """A template uses an unknown or malformed merge tag; the message says which and what to use."""

    def __init__(self, message, unknown=(), available=()):
        super().__init__(message)
        self.unknown = sorted(unknown)
        self.available = sorted(available)


# --- files staff upload -----------------------------------------------------------------------------

class ImportRefused(Exception):
    """The recipient file (or the campaign) cannot be imported; the message is one sentence meant for staff."""


class ImportFailed(Exception):
    """An import's run failed and its RecipientImport already says why: raised out of the Celery task so that
    the task is a FAILURE in Flower, not a success whose result holds an error (never retried)."""


class SuppressionImportError(ValueError):
    """The suppression file cannot be imported; the message says why, and nothing was changed."""


# --- what recipients and SendGrid send back ---------------------------------------------------------

class BounceInputError(ValueError):
    """Messages given to process_bounce_mail that cannot be read at all (a missing file, not a mailbox)."""


class BounceMailboxError(Exception):
    """A bounce mailbox that cannot be reached, logged into or read; the message says which and why."""


class UnknownDelivery(LookupError):
    """An unsubscribe token names a delivery log that does not exist (any more)."""


class WebhookRefused(Exception):
    """A webhook request that must change nothing; the message is returned to the caller."""

    def __init__(self, reason, status=403):
        super().__init__(reason)
        self.status = status


# --- mail providers (campaigns.sending.providers) ---------------------------------------------------

class ProviderError(Exception):
    """A provider call that stopped before every message had a result.

    ``results`` holds the results of the messages the provider had already settled when it stopped
    (SMTP sends one message at a time, so a refusal of MAIL FROM at message 51 comes after 50 were
    sent); every other message of the batch was certainly not sent.
    """

    # RESPONSE is the provider's answer (campaigns.sending.providers.base.ProviderResponse), or None.
    def __init__(self, message, provider="", payload=None, response=None, results=()):
        super().__init__(message)
        self.provider = provider
        self.payload = payload
        self.response = response
        self.results = list(results)

    @property
    def status(self):
        return self.response.status if self.response else None


class ProviderUnavailable(ProviderError):
    """Authentication, configuration or outage: use the next provider."""


class ProviderRefused(ProviderUnavailable):
    """A provider problem: the provider refuses *us* (credentials, configuration, a policy about the
    sender), not the recipients. Nothing more is sent through it and nobody is suppressed: the next
    provider takes over, and when none is left the campaign pauses with this reason, because waiting
    will not fix it."""


class AuthenticationRefused(ProviderRefused):
    """The provider refused our credentials (SMTP AUTH refused, SendGrid 401 or 403). A sending
    account that meets it is disabled with the reason (campaigns.sending.routing)."""


class QuotaExhausted(ProviderError):
    """Every account of the pool that may send this batch is at one of its limits: nothing more is
    sent now. ``until`` is when the first of them has room again (an aware datetime). Its rows wait,
    pending, without using up an attempt."""

    def __init__(self, message, until=None, **kwargs):
        super().__init__(message, **kwargs)
        self.until = until


class RateWaitTooLong(QuotaExhausted):
    """A send's wait for a per-second rate would take this batch past its bound
    (SEND_RATE_WAIT_MAX_SECONDS): rather than sleep in its worker, holding a sender slot, the batch
    stops before the message that would wait. The rest goes back to pending, as for a quota wait,
    and the batch is queued again for ``until`` (campaigns.sending.ratelimit.Pacer)."""


class RateLimited(ProviderError):
    """The provider asked us to wait. ``retry_after`` is how long, in seconds, counted from the
    provider's own clock (its reset time less the response's Date); None when it did not say."""

    def __init__(self, message, retry_after=None, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class TemporaryError(ProviderError):
    """5xx or a connection that could not be made: retry with backoff."""


class ClaimLost(ProviderError):
    """The batch's claim on some of its rows expired before the call began: nothing was sent."""


class RecipientsRejected(ProviderError):
    """The request was refused as a whole (nothing sent) because of some of its recipients.

    ``reasons`` maps the index of each offending message in the batch to why. A refusal that names
    no recipient is about the request itself: a ProviderRefused, not this.
    """

    def __init__(self, message, reasons=None, **kwargs):
        super().__init__(message, **kwargs)
        self.reasons = reasons or {}


class ConnectionLost(Exception):
    """SMTP: the connection failed before this message's content was sent: it was not delivered."""


class NeedsSmtpUtf8(ValueError):
    """SMTP: the address has a non-ASCII local part and the server does not offer SMTPUTF8."""
