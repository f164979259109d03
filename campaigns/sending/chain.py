"""Send one batch through the providers in order: retry what is temporary, wait for a named
rate-limit reset on the same provider, fail only the recipients a permanent rejection names, and
fall back to the next provider on authentication, configuration, policy or outage errors
(docs/design.md, sending promise 8).

Ambiguous answers never reach this module as errors: the providers turn them into `unknown`
results, which are final, so nothing that may have been sent is retried or sent over another provider.

``send_with_fallback`` either returns a result for every message, or raises a ProviderError whose
``results`` are the messages settled so far, so that the caller can put the rest back to pending.
"""

import logging
import random
import time
from dataclasses import dataclass

from django.conf import settings

from campaigns.exceptions import (
    ProviderError,
    ProviderRefused,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
    RecipientsRejected,
    TemporaryError,
)
from campaigns.security.logsafe import for_log
from campaigns.sending.providers.base import DeliveryResult, Outcome

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3  # per provider, for 5xx, connection errors and 429s that name no reset
    backoff_seconds: float = 1.0  # full jitter below 1, 2, 4 ... times this
    # The most one batch waits for one provider's rate-limit resets before it falls back.
    max_rate_limit_wait: float = 60.0
    # A 400 that names personalizations fails them and re-sends the rest; at most this many times.
    max_rejection_rounds: int = 5

    @classmethod
    def from_settings(cls):
        return cls(
            retries=settings.SEND_PROVIDER_RETRIES,
            backoff_seconds=settings.SEND_BACKOFF_SECONDS,
            max_rate_limit_wait=settings.SEND_MAX_RATE_LIMIT_WAIT,
        )

    def backoff(self, retry):
        return random.uniform(0, self.backoff_seconds * 2 ** (retry - 1))


def default_providers():
    from campaigns.sending.providers.sendgrid import SendGridProvider
    from campaigns.sending.providers.smtp import SmtpProvider

    return [provider for provider in (SendGridProvider(), SmtpProvider()) if provider.is_configured()]


class _BatchSend:
    """The state of one batch across attempts and providers: which messages are still to send, and
    the results already settled (a rejection that named them, or what a provider had done before it
    stopped), which no later attempt may touch again."""

    def __init__(self, batch, policy, sleep):
        self.batch = batch
        self.remaining = batch
        self.settled = {}
        self.policy = policy
        self.sleep = sleep

    def results(self, results=()):
        by_id = {result.delivery_id: result for result in results}
        by_id.update(self.settled)
        return [by_id[message.delivery_id] for message in self.batch.messages]

    def settle(self, results):
        """Keep RESULTS for good; only the messages without one are sent again."""
        for result in results:
            self.settled[result.delivery_id] = result
        self.remaining = self.remaining.with_messages(
            [m for m in self.remaining.messages if m.delivery_id not in self.settled])

    def through(self, provider):
        campaign_id = self.batch.campaign_id
        retry = 0
        rate_limit_budget = self.policy.max_rate_limit_wait
        rejection_rounds = 0
        while self.remaining.messages:
            try:
                return self.results(provider.send_batch(self.remaining))
            except ProviderError as error:
                self.settle(error.results)
                if not isinstance(error, (RecipientsRejected, RateLimited, TemporaryError)):
                    raise
                if not self.remaining.messages:
                    break
                if isinstance(error, RecipientsRejected):
                    rejection_rounds += 1
                    if rejection_rounds > self.policy.max_rejection_rounds:
                        raise ProviderUnavailable(
                            f"{provider.name} kept refusing recipients after {self.policy.max_rejection_rounds} "
                            f"rounds: {error}", provider=provider.name, payload=error.payload,
                            response=error.response) from error
                    self._fail_named(provider, error)
                    continue
                wait = error.retry_after if isinstance(error, RateLimited) else None
                if wait is not None:
                    # A reset the provider named: wait for it (never retry before it), on this provider,
                    # while the batch's budget lasts; a reset beyond it is a reason to fall back now.
                    if wait > rate_limit_budget or rate_limit_budget <= 0:
                        raise ProviderUnavailable(
                            f"{provider.name} rate limit resets in {wait:.0f} s, more than this batch may still "
                            f"wait ({rate_limit_budget:.0f} s): {error}", provider=provider.name,
                            payload=error.payload, response=error.response) from error
                    rate_limit_budget -= max(wait, 1.0)  # a reset already past still costs, so this ends
                else:
                    retry += 1
                    if retry > self.policy.retries:
                        raise ProviderUnavailable(
                            f"{provider.name} still failing after {self.policy.retries} retries: {error}",
                            provider=provider.name, payload=error.payload, response=error.response) from error
                    wait = self.policy.backoff(retry)
                logger.warning("Campaign %s: %s (status %s); retrying %d messages on %s in %.1f s", campaign_id,
                               for_log(error), error.status, len(self.remaining.messages), provider.name, wait)
                self.sleep(wait)
        return self.results()

    def _fail_named(self, provider, error):
        """Fail the recipients a 400 named (indices into the request just refused); the rest go again."""
        messages = self.remaining.messages
        named = sorted(i for i in error.reasons if 0 <= i < len(messages))
        self.settle([DeliveryResult(messages[i].delivery_id, Outcome.FAILED, error=error.reasons[i]) for i in named])
        logger.warning("Campaign %s: %s refused %d recipients (%s); re-sending the other %d", self.batch.campaign_id,
                       provider.name, len(named), ", ".join(f"delivery {messages[i].delivery_id}" for i in named),
                       len(self.remaining.messages))


def send_with_fallback(batch, providers=None, sleep=time.sleep, policy=None):
    """Send BATCH with the first provider that takes it; returns (provider name, one result per message).

    Raises ProviderError when no provider is left, with ``results`` for the messages already settled
    on the way (the rest were not sent). It is a ProviderRefused, the campaign's cue to pause, when
    every provider refused us; otherwise an outage that a later attempt may get past."""
    providers = default_providers() if providers is None else providers
    if not providers:
        raise ProviderRefused("No mail provider is configured: set SENDGRID_API_KEY or EMAIL_HOST.")
    state = _BatchSend(batch, policy or RetryPolicy.from_settings(), sleep)
    errors = []
    for position, provider in enumerate(providers):
        try:
            results = state.through(provider)
        except QuotaExhausted as error:
            # A rate wait too long for the batch (ratelimit.RateWaitBudget): the rest waits, pending,
            # and the batch is queued again; the next provider would not get the rest any sooner
            # than its turn in the queue.
            error.results = list(state.settled.values())
            raise
        except ProviderUnavailable as error:
            errors.append(error)
        else:
            logger.info("Campaign %s: batch of %d handled by %s", batch.campaign_id, len(results), provider.name)
            return provider.name, results
        error = errors[-1]
        following = providers[position + 1].name if position + 1 < len(providers) else None
        then = f"falling back to {following}" if following else "no provider left"
        if isinstance(error, ProviderRefused):
            logger.error("Campaign %s: provider problem (a configuration error, not the recipients): %s refused us "
                         "(status %s): %s; %s", batch.campaign_id, provider.name, error.status, for_log(error), then)
        else:
            logger.error("Campaign %s: %s unavailable: %s; %s", batch.campaign_id, provider.name, for_log(error), then)
    settled = list(state.settled.values())
    if all(isinstance(error, ProviderRefused) for error in errors):
        reason = "; ".join(str(error) for error in errors)
        raise ProviderRefused(reason, provider=errors[-1].provider, payload=errors[-1].payload,
                              response=errors[-1].response, results=settled) from errors[-1]
    error = errors[-1]
    error.results = settled
    raise error
