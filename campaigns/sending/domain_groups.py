"""Throttling per receiving domain (docs/deliverability.md, "Per-domain throttling").

Big mailbox providers throttle by source: Yahoo answers "421 4.7.0 [TSS04]", Outlook "451 4.7.500",
Gmail "421 4.7.28". A DomainGroup (edited in the admin) names the domains one provider serves, the
limits we keep towards it, and its backoff. On the SMTP path (campaigns.sending.providers.smtp):

- Limits: per second (the shared Pacer), per minute and per hour (the shared Quota), kept per sending
  account and group, since a provider throttles the source it sees (the account's relay or IP), not
  the campaign. A message over a per-minute or per-hour limit is held back until the window has room.
- Deferrals: a 421 or 4.7.x (smtp_replies.Verdict.throttles) for a recipient of a group holds that
  group back for this campaign (DomainHold): its rows go back to pending with `not_before`, without
  using an attempt and never `unknown` (nothing was accepted), and the rest of the batch goes on. The
  hold doubles with each deferral in a row (from the group's backoff or SEND_DOMAIN_BACKOFF_SECONDS, at
  most SEND_DOMAIN_BACKOFF_MAX_SECONDS). After SEND_DOMAIN_HOLDS_MAX holds in a row a deferral counts
  as an attempt again, so a domain that never takes our mail fails in the end rather than loops.
- The batch goes back to the queue for when its earliest hold ends (campaigns.sending.pipeline); a
  batch reads only the rows whose hold is over.

Recipients of domains in no group keep the per-recipient handling of smtp_replies. SendGrid throttles
per receiving domain itself: its batches are not held here.

Logs name the campaign and the group, never an address.
"""

import logging
import math
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from campaigns.models import DomainGroup
from campaigns.sending import ratelimit

logger = logging.getLogger(__name__)

# How long a worker keeps the groups before reading them again (an admin's change takes effect then).
GROUPS_TTL_SECONDS = 10.0


@dataclass(frozen=True)
class Group:
    id: int
    name: str
    domains: tuple
    per_second: int
    per_minute: int
    per_hour: int
    backoff_seconds: int


@dataclass(frozen=True)
class Hold:
    until: object  # an aware datetime
    reason: str


_cache = {"at": -math.inf, "groups": {}}


def forget_groups():
    """Read the groups again at the next batch (tests; the admin's changes wait GROUPS_TTL_SECONDS)."""
    _cache["at"] = -math.inf


def groups_by_domain():
    """{domain: Group} of the enabled groups, read at most every GROUPS_TTL_SECONDS in this process."""
    now = time.monotonic()
    if now - _cache["at"] > GROUPS_TTL_SECONDS:
        groups = {}
        for row in DomainGroup.objects.filter(enabled=True).values(
                "id", "name", "domains", "per_second", "per_minute", "per_hour", "backoff_seconds"):
            group = Group(**{**row, "domains": tuple(row["domains"])})
            for domain in group.domains:
                groups[domain.lower()] = group
        _cache.update(at=now, groups=groups)
    return _cache["groups"]


def domain_of(email):
    return email.rpartition("@")[2].strip().rstrip(".").lower()


# A deferral from a group's servers: the campaign's hold on the group starts, or grows when the last
# one is over (a deferral while the group is still held, from a message already on its way, changes
# nothing). In a row: unless the last hold ended more than the longest backoff ago.
HOLD = """
INSERT INTO campaigns_domainhold AS h (campaign_id, group_id, until, deferrals, last_reply, updated_at)
VALUES (%(campaign)s, %(group)s, now() + %(base)s * interval '1 second', 1, %(reply)s, now())
ON CONFLICT (campaign_id, group_id) DO UPDATE SET
    deferrals = CASE WHEN h.until > now() THEN h.deferrals
                     WHEN h.until < now() - %(max)s * interval '1 second' THEN 1 ELSE h.deferrals + 1 END,
    until = CASE WHEN h.until > now() THEN h.until
                 WHEN h.until < now() - %(max)s * interval '1 second' THEN now() + %(base)s * interval '1 second'
                 ELSE now() + least(%(max)s, %(base)s * power(2, h.deferrals)) * interval '1 second' END,
    last_reply = EXCLUDED.last_reply, updated_at = now()
RETURNING until, deferrals
"""

# The group's limit is reached: held until the window has room, no deferral counted.
HOLD_FOR_LIMIT = """
INSERT INTO campaigns_domainhold AS h (campaign_id, group_id, until, deferrals, last_reply, updated_at)
VALUES (%(campaign)s, %(group)s, %(until)s, 0, %(reply)s, now())
ON CONFLICT (campaign_id, group_id) DO UPDATE SET
    until = greatest(h.until, EXCLUDED.until), last_reply = EXCLUDED.last_reply, updated_at = now()
RETURNING until
"""

ACTIVE_HOLDS = "SELECT group_id, until FROM campaigns_domainhold WHERE campaign_id = %s AND until > now()"


class DomainThrottle:
    """One batch's view of the domain groups: which recipients are held, the groups' limits, and the
    holds the batch's deferrals start (Batch.domains). Providers call it; it imports no provider."""

    def __init__(self, campaign_id, groups, held):
        self.campaign_id = campaign_id
        self.groups = groups  # {domain: Group}
        self.held = dict(held)  # group id -> until
        self.quotas = {}

    @classmethod
    def for_campaign(cls, campaign_id):
        """The throttle for a campaign's batch, or None when no group is defined (nothing to do)."""
        groups = groups_by_domain()
        if not groups:
            return None
        with connection.cursor() as cursor:
            cursor.execute(ACTIVE_HOLDS, [campaign_id])
            held = dict(cursor.fetchall())
        return cls(campaign_id, groups, held)

    def group_of(self, email):
        return self.groups.get(domain_of(email))

    def held_back(self, email):
        """The Hold of EMAIL's group while it lasts, else None."""
        group = self.group_of(email)
        until = group and self.held.get(group.id)
        if until is None:
            return None
        if until <= timezone.now():
            del self.held[group.id]
            return None
        return Hold(until, f"{group.name} is held back after its servers deferred us")

    def pacer(self, email, account_key, budget):
        """A new Pacer for the per-second limit of EMAIL's group from this account, or None. The caller
        keeps one per connection and group (`pacer_key`)."""
        group = self.group_of(email)
        if group is None or not group.per_second:
            return None
        return ratelimit.Pacer(f"domain-{account_key}-{group.id}", rate=group.per_second, budget=budget)

    def pacer_key(self, email):
        group = self.group_of(email)
        return group.id if group is not None and group.per_second else None

    def reserve(self, email, account_key):
        """Take a place under the per-minute and per-hour limits of EMAIL's group from this account:
        None, or the Hold until the group has room again (the group stays held for this batch)."""
        group = self.group_of(email)
        if group is None or not (group.per_minute or group.per_hour):
            return None
        key = (account_key, group.id)
        quota = self.quotas.get(key)
        if quota is None:
            quota = self.quotas[key] = ratelimit.Quota(f"domain-{account_key}-{group.id}", group.per_minute,
                                                       group.per_hour)
        answer = quota.reserve(1)
        if answer.granted:
            return None
        until = timezone.now() + timedelta(seconds=max(1.0, (answer.free_at or time.time() + 60) - time.time()))
        reason = f"{group.name}: limit of {limit_text(group)} reached"
        with connection.cursor() as cursor:
            cursor.execute(HOLD_FOR_LIMIT, {"campaign": self.campaign_id, "group": group.id, "until": until,
                                            "reply": reason})
            until = cursor.fetchone()[0]
        self.held[group.id] = until
        logger.info("Campaign %s: domain group %s at its limit (%s): held back until %s", self.campaign_id,
                    group.name, limit_text(group), until.isoformat(timespec="seconds"))
        return Hold(until, reason)

    def deferred(self, email, verdict):
        """EMAIL's servers deferred us with VERDICT (a Verdict that `throttles`): the Hold its group is
        under now, or None when EMAIL is in no group or its group was held too often in a row (then the
        deferral counts as an attempt, as any other)."""
        group = self.group_of(email)
        if group is None:
            return None
        base = group.backoff_seconds or settings.SEND_DOMAIN_BACKOFF_SECONDS
        reply = f"{verdict.code} {verdict.enhanced}".strip()
        with connection.cursor() as cursor:
            cursor.execute(HOLD, {"campaign": self.campaign_id, "group": group.id, "base": base,
                                  "max": settings.SEND_DOMAIN_BACKOFF_MAX_SECONDS, "reply": reply})
            until, deferrals = cursor.fetchone()
        if deferrals > settings.SEND_DOMAIN_HOLDS_MAX:
            logger.warning("Campaign %s: domain group %s deferred us again (%s), %d times in a row: this deferral "
                           "counts as an attempt", self.campaign_id, group.name, reply, deferrals)
            return None
        fresh = self.held.get(group.id) != until
        self.held[group.id] = until
        if fresh:
            logger.warning("Campaign %s: domain group %s deferred us (%s): its recipients held back until %s "
                           "(hold %d in a row); the other domains go on", self.campaign_id, group.name, reply,
                           until.isoformat(timespec="seconds"), deferrals)
        return Hold(until, f"{group.name} deferred us ({reply}), held back")


def limit_text(group):
    parts = [f"{group.per_minute}/minute" if group.per_minute else "", f"{group.per_hour}/hour" if group.per_hour else ""]
    return ", ".join(part for part in parts if part)


# --- the campaign page --------------------------------------------------------------------------------

HELD_NOW = """
SELECT g.name, g.domains, h.until,
       (SELECT count(*) FROM campaigns_deliverylog d
        WHERE d.campaign_id = h.campaign_id AND d.not_before > now() AND d.status = 'pending'
          AND lower(split_part(d.email, '@', 2)) = ANY(g.domains))
FROM campaigns_domainhold h JOIN campaigns_domaingroup g ON g.id = h.group_id
WHERE h.campaign_id = %s AND h.until > now()
ORDER BY h.until, g.name
"""


def held_now(campaign_id):
    """The campaign's domain groups held back now: [{group, domains, until, rows}] (rows: held so far)."""
    with connection.cursor() as cursor:
        cursor.execute(HELD_NOW, [campaign_id])
        return [{"group": name, "domains": list(domains), "until": until, "rows": rows}
                for name, domains, until, rows in cursor.fetchall()]


BATCH_HOLDS = """
SELECT count(*) FILTER (WHERE not_before IS NULL OR not_before <= now()),
       min(not_before) FILTER (WHERE not_before > now())
FROM campaigns_deliverylog
WHERE campaign_id = %(campaign)s AND status = 'pending' AND id BETWEEN %(first)s AND %(last)s
  AND batch_number = %(batch)s
"""


def batch_holds(campaign_id, batch_number, first_id, last_id):
    """(pending rows of the batch that may go now, when its earliest held row may go or None)."""
    with connection.cursor() as cursor:
        cursor.execute(BATCH_HOLDS, {"campaign": campaign_id, "batch": batch_number, "first": first_id,
                                     "last": last_id})
        return cursor.fetchone()
