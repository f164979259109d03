"""The audience: who a campaign will mail, and its plan (the A/B split, the pool) as staff read it.

One definition, used by the Send-now confirmation, the campaign page's header and the API's stats:

    audience = recipients matching the segment (all recipients without one), minus those on the
               suppression list.

Before the start it is counted from the recipients (one scan, the same segment SQL and suppression join
the start uses: campaigns.sending.pipeline); from the start on it is read from the counters the start
wrote (total_recipients, suppressed_at_start), so it never changes after the start and no page counts
delivery logs. An A/B test's share is taken of the audience, as the start does (floor of audience ×
percent / 100), and dealt evenly to the variants.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from django.core.cache import cache
from django.db import connection

from campaigns.audience.segments import compile_segment, describe, is_everyone
from campaigns.models import Campaign, SendingAccount

NOT_STARTED = (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED)

COUNT_AUDIENCE = """
SELECT count(*), count(*) FILTER (WHERE {segment}), count(*) FILTER (WHERE {segment} AND s.id IS NOT NULL)
FROM campaigns_recipient r
LEFT JOIN campaigns_suppression s ON s.email = lower(r.email)
WHERE r.campaign_id = %(campaign_id)s
"""


@dataclass(frozen=True)
class Audience:
    """recipients: imported (None once started: not counted again); in_segment: matching the segment;
    suppressed: of those, on the suppression list (left out); started: read from the start's counters."""

    recipients: int | None
    in_segment: int
    suppressed: int
    segment: str = "every recipient"
    started: bool = False

    @property
    def size(self) -> int:
        """The people who will be mailed."""
        return max(0, self.in_segment - self.suppressed)


def audience(campaign: Campaign, max_age: int = 0) -> Audience:
    """CAMPAIGN's audience: counted before the start, read from the counters after it. MAX_AGE: seconds a count
    may be reused (the page's poll of a large scheduled campaign; the Send-now confirmation counts afresh)."""
    segment = describe(campaign.segment)
    if campaign.status not in NOT_STARTED and campaign.started_at is not None:
        return Audience(None, campaign.total_recipients, campaign.suppressed_at_start, segment, started=True)
    key = f"campaign-audience:{campaign.pk}:{campaign.total_recipients}:{_digest(campaign.segment)}"
    counted = cache.get(key) if max_age else None
    if counted is None:
        where, params = compile_segment(campaign.segment)
        with connection.cursor() as cursor:
            cursor.execute(COUNT_AUDIENCE.format(segment=where), {**params, "campaign_id": campaign.pk})
            counted = list(cursor.fetchone())
        if max_age:
            cache.set(key, counted, timeout=max_age)
    recipients, in_segment, suppressed = counted
    return Audience(recipients, in_segment, suppressed, segment)


@dataclass(frozen=True)
class AbPlan:
    percent: int
    letters: list
    test: int  # recipients in the test share, dealt evenly to the variants
    rest: int  # recipients who get the winner
    wait: timedelta

    @property
    def letters_text(self) -> str:
        return "/".join(self.letters)


def ab_plan(campaign: Campaign, size: int) -> AbPlan | None:
    """The A/B split of an audience of SIZE, as the start makes it; None when the campaign has no A/B test
    (no share, or fewer than two variants: the start sends it as an ordinary campaign)."""
    letters = list(campaign.variants.order_by("letter").values_list("letter", flat=True)[:4])
    if campaign.ab_test_percent <= 0 or len(letters) < 2:
        return None
    test = size * campaign.ab_test_percent // 100
    return AbPlan(campaign.ab_test_percent, letters, test, size - test, campaign.ab_wait)


def pool_summary(campaign: Campaign) -> str:
    """ "Newsletter pool (smtp-eu-1, smtp-eu-2)", or the default pool's description; disabled accounts said so."""
    if campaign.pool_id is None:
        return "Default (the SendGrid key and SMTP server from the environment)"
    accounts = SendingAccount.objects.filter(pools=campaign.pool_id).order_by("name").values_list("name", "enabled")
    names = [name if enabled else f"{name} (disabled)" for name, enabled in accounts]
    return f"{campaign.pool.name} ({', '.join(names) if names else 'no accounts'})"


def segment_note(found: Audience) -> str:
    """ "100 of 300 recipients match the segment (all of: city equals "Lisbon"); 5 suppressed, left out." """
    parts = []
    if found.recipients is not None and found.in_segment != found.recipients:
        parts.append(f"{found.in_segment:,} of {found.recipients:,} recipients match the segment ({found.segment})")
    elif found.recipients is None and found.segment != "every recipient":
        parts.append(f"{found.in_segment:,} recipients matched the segment ({found.segment})")
    if found.suppressed:
        parts.append(f"{found.suppressed:,} suppressed, left out")
    return "; ".join(parts) + ("." if parts else "")


def plan_lines(campaign: Campaign, found: Audience | None = None, winner_at: str = "", test_when: str = "at the start"
               ) -> dict:
    """What the Send-now confirmation and the header say of the audience, the A/B plan and the pool:
    {"audience": int, "audience_line", "segment_note", "ab_line" ("" without a test), "pool"}.
    WINNER_AT: when the winner goes out ("at 12:13"); default: after the wait, from the start. TEST_WHEN: when
    the test share goes ("now" on the Send-now confirmation)."""
    found = found or audience(campaign)
    size = found.size
    people = f"{size:,} {'person' if size == 1 else 'people'}"
    plan = ab_plan(campaign, size)
    ab_line = ""
    if plan is not None:
        when = winner_at or f"{_duration(plan.wait)} after the start"
        ab_line = (f"A/B test: {plan.percent} % ({plan.test:,}) get variants {plan.letters_text} {test_when}, the other "
                   f"{100 - plan.percent} % ({plan.rest:,}) get the winner {when}.")
    return {"audience": size, "audience_line": f"{people} will be mailed", "segment_note": segment_note(found),
            "ab_line": ab_line, "pool": pool_summary(campaign), "everyone": is_everyone(campaign.segment)}


def _digest(segment) -> str:
    return hashlib.sha256(json.dumps(segment, sort_keys=True).encode()).hexdigest()[:16]


def _duration(value: timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    if hours:
        return f"{hours} hour{'s' * (hours != 1)}"
    return f"{minutes} min"
