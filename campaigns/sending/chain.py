"""Send one batch through the providers in order: retry what is temporary, honour rate-limit resets,
fail only the recipients a permanent rejection concerns, and fall back to the next provider on
authentication, configuration or outage errors (DESIGN.md, sending promise 8).

``send_with_fallback`` either returns a result for every message, or raises a ProviderError when
no provider accepted anything, so that the caller can put the rows back to pending.
"""

import logging
import random
import time
from dataclasses import dataclass

from django.conf import settings

from campaigns.sending.providers.base import (
    DeliveryResult,
    Outcome,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RecipientsRejected,
    TemporaryError,
)

logger = logging.getLogger("campaigns.sending")

AUTH_STATUSES = (401, 403)


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3  # per provider; rate-limit waits count against them too
    backoff_seconds: float = 1.0  # full jitter below 1, 2, 4 ... times this
    max_rate_limit_wait: float = 60.0

    @classmethod
    def from_settings(cls):
        return cls(
            retries=settings.SEND_PROVIDER_RETRIES,
            backoff_seconds=settings.SEND_BACKOFF_SECONDS,
            max_rate_limit_wait=settings.SEND_MAX_RATE_LIMIT_WAIT,
        )

    def backoff(self, retry):
        return random.uniform(0, self.backoff_seconds * 2 ** (retry - 1))

    def rate_limit_wait(self, reset_at, retry):
        if reset_at is None:
            return self.backoff(retry)
        return min(self.max_rate_limit_wait, max(0.0, reset_at - time.time()))


def default_providers():
    from campaigns.sending.providers.sendgrid import SendGridProvider
    from campaigns.sending.providers.smtp import SmtpProvider

    return [provider for provider in (SendGridProvider(), SmtpProvider()) if provider.is_configured()]


class _BatchSend:
    """The state of one batch across attempts and providers: which messages are still to send, and
    the ones already failed for good by a rejection that named them."""

    def __init__(self, batch, policy, sleep):
        self.batch = batch
        self.remaining = batch
        self.failed = {}
        self.policy = policy
        self.sleep = sleep
        self.rejections_left = 1  # a 400 that names recipients: fail them, re-send the rest once

    def results(self, results=()):
        by_id = {result.delivery_id: result for result in results}
        by_id.update(self.failed)
        return [by_id[message.delivery_id] for message in self.batch.messages]

    def fail(self, messages, reason_for):
        for index, message in messages:
            self.failed[message.delivery_id] = DeliveryResult(message.delivery_id, Outcome.FAILED,
                                                              error=reason_for(index))

    def through(self, provider):
        campaign_id = self.batch.campaign_id
        retry = 0
        while True:
            try:
                return self.results(provider.send_batch(self.remaining))
            except RecipientsRejected as error:
                messages = list(enumerate(self.remaining.messages))
                named = {i for i in error.reasons if 0 <= i < len(messages)}
                if not named or self.rejections_left <= 0 or len(named) != len(error.reasons):
                    logger.error("Campaign %s: %s refused the batch (%s): %d recipients failed: %s", campaign_id,
                                 provider.name, error.status, len(messages), error)
                    self.fail(messages, lambda i: error.reasons.get(i) or str(error))
                    return self.results()
                self.rejections_left -= 1
                self.fail([(i, m) for i, m in messages if i in named], lambda i: error.reasons[i])
                logger.warning("Campaign %s: %s refused %d recipients (%s); re-sending the other %d",
                               campaign_id, provider.name, len(named),
                               ", ".join(messages[i][1].email for i in sorted(named)), len(messages) - len(named))
                rest = [m for i, m in messages if i not in named]
                if not rest:
                    return self.results()
                self.remaining = self.remaining.with_messages(rest)
            except (RateLimited, TemporaryError) as error:
                retry += 1
                if retry > self.policy.retries:
                    raise ProviderUnavailable(f"{provider.name} still failing after {self.policy.retries} retries: "
                                              f"{error}", provider=provider.name, payload=error.payload,
                                              response=error.response) from error
                if isinstance(error, RateLimited):
                    wait = self.policy.rate_limit_wait(error.reset_at, retry)
                else:
                    wait = self.policy.backoff(retry)
                logger.warning("Campaign %s: %s (status %s); retry %d of %d in %.1f s", campaign_id, error,
                               error.status, retry, self.policy.retries, wait)
                self.sleep(wait)


def send_with_fallback(batch, providers=None, sleep=time.sleep, policy=None):
    """Send BATCH with the first provider that takes it; returns (provider name, one result per message)."""
    providers = default_providers() if providers is None else providers
    if not providers:
        raise ProviderUnavailable("No mail provider is configured: set SENDGRID_API_KEY or EMAIL_HOST.")
    state = _BatchSend(batch, policy or RetryPolicy.from_settings(), sleep)
    error = None
    for position, provider in enumerate(providers):
        try:
            results = state.through(provider)
        except ProviderUnavailable as unavailable:
            error = unavailable
        else:
            logger.info("Campaign %s: batch of %d handled by %s", batch.campaign_id, len(results), provider.name)
            return provider.name, results
        following = providers[position + 1].name if position + 1 < len(providers) else None
        then = f"falling back to {following}" if following else "no provider left; the batch will be retried later"
        if error.status in AUTH_STATUSES:
            logger.error("Campaign %s: configuration error: %s refused our credentials (%s): %s; %s",
                         batch.campaign_id, provider.name, error.status, error, then)
        else:
            logger.error("Campaign %s: %s unavailable: %s; %s", batch.campaign_id, provider.name, error, then)
    raise error
