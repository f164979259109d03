"""Which sending account sends a batch (docs/sending-accounts.md, "How routing chooses").

A campaign without a pool goes through the built-in default pool: the providers of the environment
(SENDGRID_API_KEY, EMAIL_HOST), in order, exactly as before (campaigns.sending.chain). A campaign
with a pool sends each batch through the pool's accounts:

- Only enabled accounts whose From domains allow the campaign's From address take part.
- The account with the most room left is chosen, weighted: an account without limits before any
  with limits, among those the one with the fewest sends this hour per unit of weight; among
  accounts with limits, the one whose room left (the smallest of its windows) times its weight is
  largest. It reserves its places in every window at once (Redis, shared by every worker:
  campaigns.sending.ratelimit.Quota), as many as the batch needs or as it has room for; the rest of
  the batch goes to the next account.
- An account that is unavailable (after the chain's retries) or refuses the configuration hands its
  unsent messages to the next. One that refuses our credentials is disabled, with the reason on its
  admin page and in the log.
- When every account is at a limit, the rest of the batch waits: its rows go back to pending without
  using up an attempt, the campaign stays in progress and says until when, and the batch is sent
  again by itself when the first account has room (`wait_for_quota`).
"""

import dataclasses
import logging
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from email.utils import parseaddr

import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Sum, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from campaigns.deliverability import dkim
from campaigns.exceptions import (
    AuthenticationRefused,
    ProviderRefused,
    ProviderUnavailable,
    QuotaExhausted,
    RateWaitTooLong,
)
from campaigns.models import Campaign, SendingAccount, SendingAccountUsage
from campaigns.security.destinations import api_host_refusal
from campaigns.security.logsafe import for_log
from campaigns.sending import chain, ratelimit
from campaigns.sending.dispatch import dispatch_batches
from campaigns.sending.providers.base import Outcome

logger = logging.getLogger(__name__)

# The longest a waiting batch sleeps before it looks again (a limit an admin raised takes effect then).
MAX_QUOTA_WAIT_SECONDS = 15 * 60
# A batch sent under a per-second limit takes at most about this long per account.
PACED_BATCH_SECONDS = 60


def send(batch, pool_id, sleep=time.sleep):
    """Send BATCH through the campaign's pool (None: the built-in default pool); the chain's contract:
    (provider or account name, one result per message), or a ProviderError with the settled results,
    which is a QuotaExhausted when the rest must wait for quota."""
    if pool_id is None:
        return chain.send_with_fallback(batch, sleep=sleep)
    return PoolSend(batch, pool_id, sleep).run()


# --- accounts as providers ---------------------------------------------------------------------------

def rate_key(account):
    return f"account-{account.pk}"


def pace_per_second(account):
    """The Pacer's rate: the per-second limit, or a per-minute one spread over its minute."""
    if account.per_second:
        return account.per_second
    return account.per_minute / 60 if account.per_minute else 0


def provider_for(account):
    """A provider instance configured from ACCOUNT (its name is the account's, in delivery logs)."""
    from campaigns.sending.providers.sendgrid import SendGridProvider
    from campaigns.sending.providers.smtp import SmtpProvider

    if getattr(account.secret, "undecryptable", None):
        raise ProviderRefused(f"the stored password or API key of account {account.name} cannot be decrypted with "
                              f"FIELD_ENCRYPTION_KEY; enter it again", provider=account.name)
    if account.kind == SendingAccount.Kind.SENDGRID and api_host_refusal(account.api_host):
        raise ProviderRefused(f"account {account.name}: {api_host_refusal(account.api_host)}", provider=account.name)
    if getattr(account.dkim_private_key, "undecryptable", None):
        raise ProviderRefused(f"the stored DKIM key of account {account.name} cannot be decrypted with "
                              f"FIELD_ENCRYPTION_KEY; generate a new one", provider=account.name)
    common = {"name": account.name, "rate": pace_per_second(account), "rate_key": rate_key(account),
              "timeout": settings.SENDING_ACCOUNT_TIMEOUT_SECONDS}
    if account.kind == SendingAccount.Kind.SENDGRID:
        return SendGridProvider(api_key=account.secret, host=account.api_host, **common)
    return SmtpProvider(host=account.host, port=account.port or account.default_port(), security=account.security,
                        username=account.username, password=account.secret,
                        bounce_domain=ascii_bounce_domain(account.bounce_domain),
                        signer=dkim.signer_for(account), **common)


def ascii_bounce_domain(domain):
    """The account's bounce domain as it goes in MAIL FROM (IDNA), or "" for none."""
    domain = (domain or "").strip().rstrip(".").lower()
    return domain.encode("idna").decode("ascii") if domain else ""


def quota_for(account):
    return ratelimit.Quota(rate_key(account), account.per_minute, account.per_hour, account.per_day,
                           calendar_day=account.day_window == SendingAccount.DayWindow.CALENDAR)


def rank(account, look):
    """Larger sends first (see the module docstring)."""
    if look.room is None:
        return (1, -look.used["hour"] / account.weight)
    return (0, look.room * account.weight)


def from_domain(batch):
    return parseaddr(batch.from_email)[1].rpartition("@")[2].lower()


# --- one batch through a pool --------------------------------------------------------------------------

class PoolSend:
    def __init__(self, batch, pool_id, sleep):
        self.batch = batch
        self.pool_id = pool_id
        self.sleep = sleep
        self.policy = chain.RetryPolicy.from_settings()
        self.remaining = list(batch.messages)
        self.settled = {}
        self.errors = []
        # (when, by_rate, name): when each account at a limit has room again (epoch seconds), whether only its
        # per-second rate holds it (a second or so) rather than a quota window, and the account's name
        self.free_at = []
        self.last_account = ""

    def run(self):
        domain = from_domain(self.batch)
        accounts = [account for account in
                    SendingAccount.objects.filter(pools=self.pool_id, enabled=True).order_by("pk")
                    if account.may_send_from(domain)]
        if not accounts:
            raise ProviderRefused(f"No enabled account of this campaign's pool may send From {domain}: enable one, "
                                  f"or allow the domain in an account's From domains.")
        tried = set()
        while self.remaining:
            candidates = [account for account in accounts if account.pk not in tried]
            if not candidates:
                break
            looks = {account.pk: quota_for(account).look() for account in candidates}
            ranked = sorted(candidates, key=lambda a: rank(a, looks[a.pk]), reverse=True)
            account = ranked[0]
            if looks[account.pk].room == 0:  # every candidate is at a limit
                self.free_at += [(looks[a.pk].free_at, False, a.name) for a in ranked]
                break
            if not self.through(account):
                tried.add(account.pk)
        return self.finish()

    def through(self, account):
        """Send what this account has room for; False when it can take no more of this batch."""
        quota = quota_for(account)
        wanted = len(self.remaining)
        if account.per_second:
            # SMTP paces message by message; a SendGrid request arrives whole, so it is at most one
            # second's worth.
            per_call = 1 if account.kind == SendingAccount.Kind.SENDGRID else PACED_BATCH_SECONDS
            wanted = min(wanted, account.per_second * per_call)
        answer = quota.reserve(wanted)
        if not answer.granted:
            self.free_at.append((answer.free_at, False, account.name))
            return False
        part, rest = self.remaining[:answer.granted], self.remaining[answer.granted:]
        ledger = AccountLedger(self.batch.ledger, account.pk, self.batch.campaign_id)
        state = chain._BatchSend(dataclasses.replace(self.batch.with_messages(part), ledger=ledger),
                                 self.policy, self.sleep)
        error = None
        try:
            try:
                provider = provider_for(account)
                results = state.through(provider)
            except (ProviderUnavailable, QuotaExhausted) as exc:
                error, results = exc, list(state.settled.values())
            self.settle(account, results, ledger)
        except BaseException:
            # Any other way out (the claim lost, a soft time limit, a database or Redis error, a bug):
            # the places of the messages that never left are given back now, not a window later.
            give_back(quota, answer, ledger.used(state.settled.values(), len(part)))
            raise
        quota.settle(answer, sum(1 for r in results if r.outcome != Outcome.DEFERRED))
        done = {r.delivery_id for r in results}
        self.remaining = [m for m in part if m.delivery_id not in done] + rest
        if isinstance(error, QuotaExhausted):
            # Its per-second rate would keep the batch waiting too long (ratelimit.RateWaitBudget):
            # the next account may take the rest, else the batch waits in the queue, not its worker.
            self.free_at.append((error.until.timestamp(), isinstance(error, RateWaitTooLong), account.name))
            return False
        if error is not None:
            self.account_failed(account, error)
            return False
        if answer.room == 0:  # this batch filled the account: when does it have room again?
            self.free_at.append((quota.look().free_at, False, account.name))
            return False
        return True

    def settle(self, account, results, ledger):
        if not results:
            return
        self.last_account = account.name
        for result in results:
            self.settled[result.delivery_id] = result
        # Written under this account's name now, with its usage (rows SMTP recorded as it went are
        # skipped): the pipeline records the batch under one name, and a batch may go through several
        # accounts.
        ledger.record(account.name, results)
        if self.batch.ledger is not None:
            Campaign.objects.filter(pk=self.batch.campaign_id, quota_wait_until__isnull=False).update(
                quota_wait_until=None)

    def account_failed(self, account, error):
        self.errors.append(error)
        reason = str(error)[:2000]
        now = timezone.now()
        if isinstance(error, AuthenticationRefused):
            disabled = SendingAccount.objects.filter(pk=account.pk, enabled=True).update(
                enabled=False, disabled_reason=f"Disabled {now:%Y-%m-%d %H:%M} UTC: authentication refused. {reason}",
                last_error=reason, last_error_at=now)
            if disabled:
                logger.error("Campaign %s: sending account %s (id %s) disabled: authentication refused: %s",
                             self.batch.campaign_id, for_log(account.name), account.pk, for_log(error))
        else:
            SendingAccount.objects.filter(pk=account.pk).update(last_error=reason, last_error_at=now)
            logger.error("Campaign %s: sending account %s (id %s) unavailable, trying the next: %s",
                         self.batch.campaign_id, for_log(account.name), account.pk, for_log(error))

    def finish(self):
        results = list(self.settled.values())
        if not self.remaining:
            order = {m.delivery_id: i for i, m in enumerate(self.batch.messages)}
            return self.last_account, sorted(results, key=lambda r: order[r.delivery_id])
        free = sorted(entry for entry in self.free_at if entry[0])
        if self.free_at:
            until = datetime.fromtimestamp(free[0][0], dt_timezone.utc) if free else timezone.now() + timedelta(
                seconds=60)
            # The account that frees first waits only for its rate (the others may be at a day cap): the
            # batch waits that second in the queue, not a whole second more, nor with a note on the page.
            if free and free[0][1]:
                raise RateWaitTooLong(f"every account of the pool that may take the rest waits for its rate: "
                                      f"waiting for the rate limit of account {free[0][2]} until "
                                      f"{until:%H:%M:%S} UTC", until=until, provider=self.last_account,
                                      results=results)
            first = f" (account {free[0][2]} has room first)" if free else ""
            raise QuotaExhausted(f"every account of the pool is at a limit until {until:%H:%M} UTC{first}",
                                 until=until, provider=self.last_account, results=results)
        if self.errors and all(isinstance(error, ProviderRefused) for error in self.errors):
            raise ProviderRefused("; ".join(str(error) for error in self.errors), provider=self.last_account,
                                  results=results)
        error = self.errors[-1]
        raise ProviderUnavailable(str(error), provider=self.last_account, results=results) from error


class AccountLedger:
    """The batch's ledger (None for a test email) as one account sends its part: what is written
    through it moves the account's usage in the same transaction, chunk by chunk as SMTP records, so
    "sent this hour" moves during a long paced batch; and it knows which messages left (their call
    began and no result says they did not), for the places to give back when the send stops early."""

    def __init__(self, ledger, account_id, campaign_id):
        self.ledger, self.account_id, self.campaign_id = ledger, account_id, campaign_id
        self.left = set()  # delivery ids whose call began, or whose result used a place
        self.counted = set()  # delivery ids whose send is in the usage table

    def __getattr__(self, name):
        return getattr(self.ledger, name)

    def call_began(self, delivery_ids):
        owned = set(delivery_ids) if self.ledger is None else self.ledger.call_began(delivery_ids)
        self.left |= owned
        return owned

    def call_ended(self, delivery_ids):
        self.left -= set(delivery_ids)
        if self.ledger is not None:
            self.ledger.call_ended(delivery_ids)

    def record(self, provider, results, **options):
        self._note(results)
        if self.ledger is None:
            return  # a test email: it takes quota, but is no send of the campaign
        sent = [r.delivery_id for r in results if r.outcome == Outcome.SENT and r.delivery_id not in self.counted]
        with transaction.atomic():
            self.ledger.record(provider, results, **options)
            record_usage(self.account_id, self.campaign_id, len(sent))
        self.counted.update(sent)

    def _note(self, results):
        for result in results:
            if result.outcome == Outcome.DEFERRED:
                self.left.discard(result.delivery_id)
            else:
                self.left.add(result.delivery_id)

    def used(self, settled, granted):
        """Places used when the send stopped early: each message that left or has a result using one
        (a test email, with no ledger to mark, is taken as used)."""
        if self.ledger is None:
            return granted
        self._note(settled)
        return len(self.left)


def give_back(quota, answer, used):
    """Give back the places not USED; a Redis error is logged (they free with their window)."""
    try:
        quota.settle(answer, used)
    except redis.RedisError:
        logger.warning("Could not give back %d unused quota places; they free with their window",
                       answer.granted - used, exc_info=True)


UPSERT_USAGE = """
INSERT INTO campaigns_sendingaccountusage (account_id, campaign_id, hour, sent)
VALUES (%s, %s, %s, %s)
ON CONFLICT (account_id, campaign_id, hour) DO UPDATE SET sent = campaigns_sendingaccountusage.sent + EXCLUDED.sent
"""


def local_hour(moment):
    """The start of MOMENT's hour in TIME_ZONE: in a half-hour zone (Asia/Kolkata) it is :30 UTC, so
    usage bucketed by UTC hours could not say what was sent "this hour" or "today"."""
    return timezone.localtime(moment).replace(minute=0, second=0, microsecond=0)


def record_usage(account_id, campaign_id, sent):
    if sent:
        with connection.cursor() as cursor:
            cursor.execute(UPSERT_USAGE, [account_id, campaign_id, local_hour(timezone.now()), sent])


# --- waiting for quota ------------------------------------------------------------------------------------

def wait_for_quota(campaign_id, batch_number, until, rate_only=False, reason=""):
    """The batch's rows are pending again: note on the campaign until when, and send the batch again
    then (or sooner, to look again), by itself. RATE_ONLY: it waits for a per-second rate
    (ratelimit.RateWaitBudget), seconds, not worth a note on the campaign's page. REASON: what it waits
    for, shown with its queued task in Flower."""
    left = (until - timezone.now()).total_seconds()
    # A rate wait is a second or two: rounding it up would cut a slow account's pace by a third.
    seconds = max(0.1, left) if rate_only else max(1, min(MAX_QUOTA_WAIT_SECONDS, int(left) + 1))
    wakes = timezone.now() + timedelta(seconds=seconds)
    with transaction.atomic():
        # The sweep re-dispatches a campaign that made no progress for SWEEP_STALL_SECONDS; a waiting
        # one is not stalled until its batch should have woken (else every sweep would add a task).
        note = {} if rate_only else {"quota_wait_until": until}
        Campaign.objects.filter(pk=campaign_id, status=Campaign.Status.IN_PROGRESS).update(
            last_progress_at=Greatest(F("last_progress_at"), Value(wakes)), **note)
        dispatch_batches(campaign_id, [batch_number], countdown=seconds, waiting=waiting_label(reason, until))
    if rate_only:
        logger.info("Campaign %s batch %s waits for its rate in the queue, not a sender slot; sending again in %.1f s",
                    campaign_id, batch_number, seconds)
    else:
        logger.info("Campaign %s batch %s waits for quota: every account of its pool is at a limit until %s; "
                    "sending again in %s s", campaign_id, batch_number, until.isoformat(timespec="seconds"), seconds)


def waiting_label(reason, until):
    """`waiting for the rate limit of account relay-1 until 12:13:05 UTC`: why a re-queued batch waits."""
    reason = str(reason)
    if "waiting for" in reason:
        return reason[reason.index("waiting for"):]
    return f"waiting until {until:%H:%M:%S} UTC: {reason}" if reason else f"waiting until {until:%H:%M:%S} UTC"


# --- what the pages show ------------------------------------------------------------------------------

def sends_per_account(campaign_id):
    """[(account name, sent)] for a campaign, most first."""
    rows = (SendingAccountUsage.objects.filter(campaign_id=campaign_id).values("account__name")
            .annotate(total=Sum("sent")).order_by("-total", "account__name"))
    return [(row["account__name"], row["total"]) for row in rows]


# Account kinds whose provider reports deliveries to us (SendGrid's Event Webhook, SES events through SNS);
# plain SMTP reports none.
REPORTING_KINDS = (SendingAccount.Kind.SENDGRID, SendingAccount.Kind.SES_SMTP)


def reports_deliveries(campaign):
    """Whether the campaign's way out can tell us a message was delivered: its pool has a SendGrid or SES
    account, or (the default pool) SendGrid is configured. Plain SMTP cannot: its page says so, not "0"."""
    if campaign.pool_id is None:
        return bool(settings.SENDGRID_API_KEY)
    return SendingAccount.objects.filter(pools=campaign.pool_id, kind__in=REPORTING_KINDS).exists()


def window_seconds(account, window):
    if window == "day":
        if account.day_window == SendingAccount.DayWindow.CALENDAR:
            return 86400
        return settings.SENDING_ACCOUNT_DAY_SECONDS
    return {"second": 1, "minute": 60, "hour": 3600}[window]


def sustained_rate(account):
    """Messages per second the account can keep up for long: its tightest limit over its window; None
    without limits."""
    limits = account.limits()
    if not limits:
        return None
    return min(limit / window_seconds(account, window) for window, limit in limits.items())


def estimated_finish(campaign, pending, observed_rate):
    """When the campaign should be done: its pending messages over its pool's room now and rates
    (an aware datetime), or None when nothing tells (nothing sent yet through unlimited accounts)."""
    now = timezone.now()
    if pending <= 0:
        return None
    if campaign.pool_id is None:
        return now + timedelta(seconds=pending / observed_rate) if observed_rate else None
    accounts = list(SendingAccount.objects.filter(pools=campaign.pool_id, enabled=True))
    rates = [sustained_rate(account) for account in accounts]
    if not accounts:
        return None
    if any(rate is None for rate in rates):
        return now + timedelta(seconds=pending / observed_rate) if observed_rate else None
    room = sum(quota_for(account).look().room or 0 for account in accounts)
    now_part = min(pending, room)
    seconds = (now_part / observed_rate if observed_rate else 0) + (pending - now_part) / sum(rates)
    return now + timedelta(seconds=seconds)


def account_usage(account, hours=24):
    """Sent this hour and today, both in TIME_ZONE, and [(hour, sent)] for the last HOURS hours, oldest
    first."""
    now = timezone.now()
    this_hour = local_hour(now).astimezone(dt_timezone.utc)  # UTC: arithmetic across a DST change
    first = this_hour - timedelta(hours=hours - 1)
    midnight = local_hour(now).replace(hour=0)
    rows = (SendingAccountUsage.objects.filter(account=account, hour__gte=min(first, midnight))
            .values("hour").annotate(total=Sum("sent")).values_list("hour", "total"))
    counts = [0] * hours
    hour_now = today = 0
    for hour, sent in rows:
        # Rows written before TIME_ZONE changed may start within a local hour: counted in that hour.
        point = int((hour - first).total_seconds() // 3600)
        if 0 <= point < hours:
            counts[point] += sent
        if hour >= this_hour:
            hour_now += sent
        if hour >= midnight:
            today += sent
    series = [(first + timedelta(hours=i), n) for i, n in enumerate(counts)]
    return {"hour": hour_now, "today": today, "series": series}
