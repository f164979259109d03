"""Opens and clicks: who opened (a person or a machine), who clicked which link, and when.

Both paths that learn of engagement call `apply`: the SMTP path's open pixel and click redirect
(campaigns.views.tracking, one event at a time) and the SendGrid Event Webhook (a batch of events).
Everything is a handful of set-based statements, whatever the number of events:

- a delivery's first open by a person sets `opened_at`, its first open by a machine sets
  `machine_opened_at`; each counts once per recipient (`opened_count`, `machine_opened_count`);
- a delivery's first click sets `clicked_at` (`clicked_count`); its first click on each link adds a
  LinkClick row and one to that CampaignLink's `clickers`;
- a click is also a person's open when none was recorded (a click proves the message was read, even
  where images were blocked): it sets `opened_at` then, so "Opened by people" (`opened_count`) is the
  same figure on every page, the follow-ups' openers and the A/B test's opens included;
- every first open and first click is also counted in its hour (EngagementHour) and its minute
  (EngagementMinute), for the chart (per minute in a campaign's first hour).

So the counters always equal the rows they count, and the campaign page reads counters only.

The machine-open rule (docs/follow-ups-and-ab-tests.md): an open is a machine's when
1. the provider says so (SendGrid's `sg_machine_open`: Apple Mail Privacy Protection), or
2. its user agent is a known prefetching proxy or scanner (MACHINE_USER_AGENT_* below), or
3. it came less than MACHINE_OPEN_SECONDS after the message was delivered (or, without a delivery
   event, sent): faster than a person opens mail, as security scanners and prefetchers do.
Google's and Yahoo's image proxies fetch images when the person opens the message, so they count as
a person's open.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

from django.conf import settings
from django.db import connection, transaction

from campaigns.models import Campaign
from campaigns.webhooks import events as webhook_events

# The user agent of Apple Mail Privacy Protection's prefetch: exactly this, nothing after it.
MACHINE_USER_AGENT_EXACT = {"mozilla/5.0"}
# Substrings (lower case) of prefetchers and link/attachment scanners that load images without a person.
MACHINE_USER_AGENT_PARTS = (
    "barracuda", "mimecast", "proofpoint", "symantec", "forcepoint", "trendmicro", "sophos",
    "bingpreview", "headlesschrome", "phantomjs", "python-requests", "python-urllib", "go-http-client",
    "curl/", "wget/", "okhttp", "java/", "libwww-perl",
)
# A client calling itself a bot, crawler, spider or scanner ("bingbot/2.0", "Some Scanner"), as a word
# or a name's end before a version: not a phone model such as "CUBOT X30".
MACHINE_USER_AGENT_WORDS = re.compile(r"\b(?:bot|crawler|spider|scanner)\b|[a-z]bot/")
URL_LIMIT = 2048  # longest URL kept for a link (SendGrid posts whatever the message had)
COUNTERS = ("opened_count", "machine_opened_count", "clicked_count")


def is_machine_user_agent(user_agent: str | None) -> bool:
    agent = (user_agent or "").strip().lower()
    if not agent:
        return False  # no user agent says nothing either way; the delay rule still applies
    return (agent in MACHINE_USER_AGENT_EXACT or any(part in agent for part in MACHINE_USER_AGENT_PARTS)
            or MACHINE_USER_AGENT_WORDS.search(agent) is not None)


@dataclass(frozen=True)
class Open:
    delivery_id: int
    at: float  # Unix time
    machine: bool  # the provider or the user agent says a machine opened it (the delay rule is applied in SQL)


@dataclass(frozen=True)
class Click:
    delivery_id: int
    at: float
    url: str


# Each delivery's first open by a person and by a machine in this batch; the delay rule needs the
# delivery's own times, so it is applied here, against the row.
FIRST_OPENS = """
SELECT e.id, min(e.at) FILTER (WHERE NOT e.machine), min(e.at) FILTER (WHERE e.machine)
FROM (SELECT e.id, to_timestamp(e.ts) AS at,
             e.flagged OR coalesce(%(seconds)s > 0 AND to_timestamp(e.ts) < coalesce(d.delivered_at, d.sent_at)
                                   + make_interval(secs => %(seconds)s), false) AS machine
      FROM unnest(%(ids)s::bigint[], %(ts)s::float8[], %(flagged)s::bool[]) AS e(id, ts, flagged)
      JOIN campaigns_deliverylog d ON d.id = e.id) AS e
GROUP BY e.id
"""

SET_FIRST = """
UPDATE campaigns_deliverylog AS d SET {column} = v.at
FROM (SELECT id, min(at) AS at FROM unnest(%(ids)s::bigint[], %(at)s::timestamptz[]) AS v(id, at) GROUP BY id) AS v
WHERE d.id = v.id AND d.{column} IS NULL
RETURNING d.campaign_id, date_trunc('hour', v.at), d.id, date_trunc('minute', v.at)
"""

CREATE_LINKS = """
INSERT INTO campaigns_campaignlink (campaign_id, url, clickers)
SELECT DISTINCT d.campaign_id, e.url, 0
FROM unnest(%(ids)s::bigint[], %(urls)s::text[]) AS e(id, url)
JOIN campaigns_deliverylog d ON d.id = e.id
ORDER BY 1, 2
ON CONFLICT (campaign_id, md5(url)) DO NOTHING
"""

# Locked in id order, so concurrent requests clicking the same links wait rather than deadlock.
LOCK_LINKS = """
SELECT l.id, e.id, e.ts
FROM unnest(%(ids)s::bigint[], %(ts)s::float8[], %(urls)s::text[]) AS e(id, ts, url)
JOIN campaigns_deliverylog d ON d.id = e.id
JOIN campaigns_campaignlink l ON l.campaign_id = d.campaign_id AND md5(l.url) = md5(e.url) AND l.url = e.url
ORDER BY l.id
FOR UPDATE OF l
"""

ADD_LINK_CLICKS = """
INSERT INTO campaigns_linkclick (link_id, delivery_id, clicked_at)
SELECT link_id, delivery_id, to_timestamp(min(ts))
FROM unnest(%(links)s::bigint[], %(ids)s::bigint[], %(ts)s::float8[]) AS v(link_id, delivery_id, ts)
GROUP BY link_id, delivery_id
ON CONFLICT (link_id, delivery_id) DO NOTHING
RETURNING link_id, clicked_at
"""

BUMP_LINKS = """
UPDATE campaigns_campaignlink AS l
SET clickers = l.clickers + v.n, first_clicked_at = LEAST(l.first_clicked_at, v.first)
FROM unnest(%(links)s::bigint[], %(n)s::int[], %(first)s::timestamptz[]) AS v(id, n, first)
WHERE l.id = v.id
"""

BUMP_HOURS = """
INSERT INTO campaigns_engagementhour AS h (campaign_id, hour, opens, machine_opens, clicks)
SELECT * FROM unnest(%(campaigns)s::bigint[], %(hours)s::timestamptz[], %(opens)s::int[],
                     %(machine_opens)s::int[], %(clicks)s::int[])
ORDER BY 1, 2
ON CONFLICT (campaign_id, hour) DO UPDATE
SET opens = h.opens + EXCLUDED.opens, machine_opens = h.machine_opens + EXCLUDED.machine_opens,
    clicks = h.clicks + EXCLUDED.clicks
"""

BUMP_MINUTES = BUMP_HOURS.replace("campaigns_engagementhour", "campaigns_engagementminute").replace(
    "(campaign_id, hour", "(campaign_id, minute")

BUMP_CAMPAIGN = """
UPDATE campaigns_campaign AS c
SET opened_count = c.opened_count + v.opened, machine_opened_count = c.machine_opened_count + v.machine,
    clicked_count = c.clicked_count + v.clicked
FROM unnest(%(campaigns)s::bigint[], %(opened)s::int[], %(machine)s::int[], %(clicked)s::int[])
     AS v(id, opened, machine, clicked)
WHERE c.id = v.id
"""


def apply(cursor, opens: list[Open], clicks: list[Click]) -> dict[int, Counter]:
    """Record OPENS and CLICKS; returns campaign id -> {counter: recipients newly counted}.

    The caller locks the campaigns first (Campaign.lock: campaign, then rows, the order of every
    writer) and adds those to the campaign rows in the same transaction: `bump_campaigns` here, or
    the webhook's own counter statement.
    """
    counters: dict[int, Counter] = {}
    hours: dict[tuple, Counter] = {}
    minutes: dict[tuple, Counter] = {}

    def count(rows, counter, bucket, event=None):
        for campaign_id, hour, _, minute in rows:
            counters.setdefault(campaign_id, Counter())[counter] += 1
            hours.setdefault((campaign_id, hour), Counter())[bucket] += 1
            minutes.setdefault((campaign_id, minute), Counter())[bucket] += 1
        if event:  # a person's first open, a first click: outbound webhooks, in this transaction
            webhook_events.record_delivery_events(event, [row[2] for row in rows])

    if opens:
        cursor.execute(FIRST_OPENS, {"ids": [o.delivery_id for o in opens], "ts": [o.at for o in opens],
                                     "flagged": [o.machine for o in opens],
                                     "seconds": float(settings.MACHINE_OPEN_SECONDS)})
        firsts = cursor.fetchall()
        for column, counter, bucket, index, event in (
                ("opened_at", "opened_count", "opens", 1, "delivery.opened"),
                ("machine_opened_at", "machine_opened_count", "machine_opens", 2, None)):
            pairs = [(row[0], row[index]) for row in firsts if row[index] is not None]
            if pairs:
                cursor.execute(SET_FIRST.format(column=column),
                               {"ids": [p[0] for p in pairs], "at": [p[1] for p in pairs]})
                count(cursor.fetchall(), counter, bucket, event)
    if clicks:
        clicks = [Click(c.delivery_id, c.at, (c.url or "")[:URL_LIMIT]) for c in clicks]
        cursor.execute(SET_FIRST.format(column="clicked_at"),
                       {"ids": [c.delivery_id for c in clicks], "at": [_when(c.at) for c in clicks]})
        count(cursor.fetchall(), "clicked_count", "clicks", "delivery.clicked")
        # A click without a recorded open by a person is one (campaigns.stats.FIGURES, "opened").
        cursor.execute(SET_FIRST.format(column="opened_at"),
                       {"ids": [c.delivery_id for c in clicks], "at": [_when(c.at) for c in clicks]})
        count(cursor.fetchall(), "opened_count", "opens", "delivery.opened")
        with_url = [c for c in clicks if c.url]
        if with_url:
            _count_link_clicks(cursor, with_url)
    for statement, buckets in ((BUMP_HOURS, hours), (BUMP_MINUTES, minutes)):
        if buckets:
            keys = sorted(buckets)
            cursor.execute(statement, {"campaigns": [k[0] for k in keys], "hours": [k[1] for k in keys],
                                       **{name: [buckets[k][name] for k in keys]
                                          for name in ("opens", "machine_opens", "clicks")}})
    return counters


def _when(unix_time):
    return datetime.fromtimestamp(unix_time, timezone.utc)


def _count_link_clicks(cursor, clicks):
    params = {"ids": [c.delivery_id for c in clicks], "ts": [c.at for c in clicks], "urls": [c.url for c in clicks]}
    cursor.execute(CREATE_LINKS, params)
    cursor.execute(LOCK_LINKS, params)
    rows = cursor.fetchall()
    if not rows:
        return
    cursor.execute(ADD_LINK_CLICKS, {"links": [r[0] for r in rows], "ids": [r[1] for r in rows],
                                     "ts": [r[2] for r in rows]})
    added, first = Counter(), {}
    for link_id, clicked_at in cursor.fetchall():
        added[link_id] += 1
        first[link_id] = min(first.get(link_id, clicked_at), clicked_at)
    if added:
        links = sorted(added)
        cursor.execute(BUMP_LINKS, {"links": links, "n": [added[k] for k in links], "first": [first[k] for k in links]})


def bump_campaigns(cursor, counters: dict[int, Counter]) -> None:
    if not counters:
        return
    campaigns = sorted(counters)
    cursor.execute(BUMP_CAMPAIGN, {"campaigns": campaigns,
                                   "opened": [counters[c]["opened_count"] for c in campaigns],
                                   "machine": [counters[c]["machine_opened_count"] for c in campaigns],
                                   "clicked": [counters[c]["clicked_count"] for c in campaigns]})


def record(opens=(), clicks=()) -> dict[int, Counter]:
    """Apply opens and clicks and bump their campaigns, in one transaction (the SMTP tracking views).
    Their campaigns are locked first: the lock order of every writer (campaign, then rows)."""
    opens, clicks = list(opens), list(clicks)
    with transaction.atomic(), connection.cursor() as cursor:
        Campaign.lock_for_deliveries([o.delivery_id for o in opens] + [c.delivery_id for c in clicks])
        counters = apply(cursor, opens, clicks)
        bump_campaigns(cursor, counters)
    return counters


def record_open(delivery_id: int, user_agent: str | None, at: float | None = None):
    return record(opens=[Open(delivery_id, time.time() if at is None else at, is_machine_user_agent(user_agent))])


def record_click(delivery_id: int, url: str, at: float | None = None):
    return record(clicks=[Click(delivery_id, time.time() if at is None else at, url)])
