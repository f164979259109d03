"""Events mail providers report after sending (SendGrid's Event Webhook, Amazon SES through SNS), applied
to delivery logs, campaign counters and suppressions in a few set-based statements.

Each provider's module verifies its requests and translates its events into ProviderEvent; this module
is the one path they all take. Applying a batch, in one transaction:
1. record the events' ids (INSERT ... ON CONFLICT DO NOTHING RETURNING): only ids not seen before go
   on, so a retried or replayed delivery counts once;
2. match events to delivery logs by the delivery and campaign ids our messages carry (SendGrid's
   custom_args, the X-Delivery-ID and X-Campaign-ID headers SES echoes back), else by the provider's
   message id and the address; then lock their campaigns and then the rows, each in id order (the
   lock order of every writer: campaign, then batch, then rows);
3. one conditional UPDATE per kind of event sets the first timestamp (`... WHERE bounced_at IS NULL`),
   so counters count recipients, not events: a recipient who opens five times is one open; opens (a
   person's or a machine's) and clicks (per link, per hour) go through campaigns.engagement.opens_and_clicks likewise;
4. events that prove a dead address or a complaint become suppressions, and so does an address with
   SOFT_BOUNCE_LIMIT deliveries soft-bounced within SOFT_BOUNCE_DAYS; campaign counters go up by the
   number of rows that actually changed, in one statement; unknown deliveries that an event proves sent
   or failed are settled (campaigns.sending.ledger.settle_unknown), and the evidence for deliveries
   still pending (the worker died after the provider took them) is kept on the row, to settle it
   when it would become unknown.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import connection, transaction

from campaigns.audience.suppression import normalize, suppress_many
from campaigns.engagement import opens_and_clicks
from campaigns.models import Campaign, Suppression
from campaigns.sending.ledger import settle_unknown
from campaigns.webhooks import events as webhook_events

# Providers retry a failed delivery for up to a day (SendGrid) or an hour (SNS); ids are kept well beyond.
EVENT_ID_RETENTION_DAYS = 7

# ProviderEvent.first -> (DeliveryLog timestamp, Campaign counter) set by its first occurrence per recipient
FIRST_OCCURRENCE = {
    "delivered": ("delivered_at", "delivered_count"),
    "opened": ("opened_at", "opened_count"),
    "clicked": ("clicked_at", "clicked_count"),
    "bounced": ("bounced_at", "bounced_count"),
    "complained": ("complained_at", "complained_count"),
    "soft_bounced": ("soft_bounced_at", "soft_bounced_count"),
    "unsubscribed": ("unsubscribed_at", "unsubscribed_count"),
}
# Opens and clicks are recorded by campaigns.engagement.opens_and_clicks (a person's or a machine's, per link, per hour).
ENGAGEMENT = {"opened", "clicked"}
# The first occurrences that are outbound webhook events (campaigns.webhooks.events).
WEBHOOK_EVENTS = {"bounced_at": "delivery.bounced", "complained_at": "delivery.complained",
                  "unsubscribed_at": "delivery.unsubscribed"}
COUNTERS = (*(counter for _, counter in FIRST_OCCURRENCE.values()), "machine_opened_count")


@dataclass
class ProviderEvent:
    """One event about one recipient, in the provider's terms translated to ours."""

    event_id: str  # unique across providers (prefix it), the de-duplication key
    timestamp: float  # epoch seconds
    email: str = ""
    delivery_id: int | None = None  # as our message carried it, checked against campaign_id
    campaign_id: int | None = None
    message_id: str = ""  # the provider message id we stored (DeliveryLog.provider_message_id)
    first: str | None = None  # a FIRST_OCCURRENCE key
    note: str | None = None  # kept as the delivery log's last_error until it is delivered
    evidence: tuple[str, str] | None = None  # ("sent" | "failed", note) for an unknown delivery
    suppression: str | None = None  # a Suppression.Reason
    source: str = ""  # the suppression's source
    machine: bool = False  # an open the provider or its user agent says a machine made (campaigns.engagement.opens_and_clicks)
    url: str = ""  # a click's link


@dataclass
class EventsReport:
    received: int = 0
    applied: int = 0  # new events matched to a delivery log
    duplicates: int = 0  # already applied earlier (retry or replay)
    unmatched: int = 0  # new events of no delivery of ours (suppressions still apply)
    ignored: int = 0  # events of kinds we do not use, or without an id
    suppressed: int = 0  # addresses newly suppressed
    settled: int = 0  # unknown deliveries the events proved sent (or failed)
    kept: int = 0  # deliveries whose result is not written yet: the evidence waits on the row

    def as_dict(self):
        return asdict(self)


# In one order whatever the request's: two requests sharing ids (a retry arriving while the first
# delivery is still being applied) then wait for each other instead of each holding an id the other needs.
RECORD_EVENT_IDS = """
INSERT INTO campaigns_webhook_event (event_id)
SELECT id FROM unnest(%(ids)s::text[]) AS id ORDER BY id
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""

# Matching reads only: the locks are taken after it, in the order every writer uses (campaign, then
# batch, then rows): the matched rows' campaigns in id order (Campaign.lock), then the rows in id
# order (LOCK_ROWS). A result writer (campaign, batch, rows) and an event request then wait for each
# other instead of each holding what the other needs.
MATCH_BY_DELIVERY_ID = """
SELECT d.id, d.campaign_id, d.email
FROM campaigns_deliverylog d
JOIN (SELECT DISTINCT * FROM unnest(%(ids)s::bigint[], %(campaigns)s::bigint[]) AS v(id, campaign_id)) v
  ON d.id = v.id AND d.campaign_id = v.campaign_id
"""

MATCH_BY_MESSAGE_ID = """
SELECT v.message_id, v.email, d.id, d.campaign_id
FROM (SELECT DISTINCT * FROM unnest(%(message_ids)s::text[], %(emails)s::text[]) AS v(message_id, email)) v
JOIN campaigns_deliverylog d ON d.provider_message_id = v.message_id AND lower(d.email) = v.email
"""

LOCK_ROWS = """
SELECT id FROM campaigns_deliverylog WHERE id = ANY(%(ids)s::bigint[]) ORDER BY id FOR UPDATE
"""

SET_FIRST_OCCURRENCE = """
UPDATE campaigns_deliverylog AS d SET {column} = v.at
FROM (SELECT id, to_timestamp(min(ts)) AS at
      FROM unnest(%(ids)s::bigint[], %(ts)s::float8[]) AS e(id, ts) GROUP BY id) AS v
WHERE d.id = v.id AND d.{column} IS NULL
RETURNING d.campaign_id, d.id
"""

NOTE_ERRORS = """
UPDATE campaigns_deliverylog AS d SET last_error = v.note
FROM (SELECT DISTINCT ON (id) id, note FROM unnest(%(ids)s::bigint[], %(notes)s::text[]) AS e(id, note)
      ORDER BY id) AS v
WHERE d.id = v.id AND d.delivered_at IS NULL
"""

# Evidence for rows whose result is not written yet (the worker died after the provider took the
# message, or has not written it yet): kept on the row, applied when the row's result is written or
# when it would become unknown (campaigns.sending.ledger). "sent" wins over "failed", as above.
KEEP_EARLY_EVIDENCE = """
UPDATE campaigns_deliverylog AS d SET early_evidence = v.status, early_evidence_note = left(v.note, 500)
FROM (SELECT DISTINCT ON (id) id, status, note
      FROM unnest(%(ids)s::bigint[], %(statuses)s::text[], %(notes)s::text[]) AS e(id, status, note)
      ORDER BY id, status DESC) AS v
WHERE d.id = v.id AND d.status = 'pending' AND (d.early_evidence = '' OR v.status = 'sent')
"""

BUMP_COUNTERS = """
UPDATE campaigns_campaign AS c SET {assignments}
FROM unnest(%(campaigns)s::bigint[], {arrays}) AS v(id, {columns})
WHERE c.id = v.id
"""

# Addresses of the given ones whose deliveries soft-bounced SOFT_BOUNCE_LIMIT times within SOFT_BOUNCE_DAYS.
SOFT_BOUNCED_TOO_OFTEN = """
SELECT email, count(*) FROM campaigns_deliverylog
WHERE email = ANY(%(emails)s) AND soft_bounced_at >= now() - %(days)s * interval '1 day'
GROUP BY email HAVING count(*) >= %(limit)s
"""

PRUNE_EVENT_IDS = """
DELETE FROM campaigns_webhook_event WHERE event_id IN (
    SELECT event_id FROM campaigns_webhook_event
    WHERE received_at < now() - %(days)s * interval '1 day'
    ORDER BY received_at LIMIT 10000 FOR UPDATE SKIP LOCKED)
"""


def as_id(value):
    """VALUE as a database id, or None when it is not one."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 2 ** 63 else None


def apply_events(events: list[ProviderEvent], received: int | None = None, ignored: int = 0) -> EventsReport:
    """Apply one provider request's events; safe to call again with the same events.

    RECEIVED and IGNORED count what the provider sent that never became a ProviderEvent."""
    report = EventsReport(received=len(events) + ignored if received is None else received, ignored=ignored)
    unique = {}
    for event in events:
        if event.event_id in unique:
            report.duplicates += 1
        else:
            unique[event.event_id] = event
    if not unique:
        return report

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(RECORD_EVENT_IDS, {"ids": list(unique)})
        new_ids = {row[0] for row in cursor.fetchall()}
        report.duplicates += len(unique) - len(new_ids)
        new_events = [event for event_id, event in unique.items() if event_id in new_ids]
        matches = _match(cursor, new_events)
        Campaign.lock(match[1] for match in matches if match)
        cursor.execute(LOCK_ROWS, {"ids": sorted({match[0] for match in matches if match})})
        report.applied = sum(1 for match in matches if match)
        report.unmatched = len(new_events) - report.applied

        counters = defaultdict(Counter)  # campaign id -> counter -> recipients changed
        for (column, counter), pairs in _by_first_occurrence(new_events, matches).items():
            cursor.execute(SET_FIRST_OCCURRENCE.format(column=column),
                           {"ids": [pk for pk, _ in pairs], "ts": [ts for _, ts in pairs]})
            changed = cursor.fetchall()
            for campaign_id, _ in changed:
                counters[campaign_id][counter] += 1
            if column in WEBHOOK_EVENTS:  # outbound webhooks, in this transaction
                webhook_events.record_delivery_events(WEBHOOK_EVENTS[column], [pk for _, pk in changed])
        for campaign_id, counted in opens_and_clicks.apply(cursor, *_engagement(new_events, matches)).items():
            counters[campaign_id].update(counted)
        _note_errors(cursor, new_events, matches)
        _bump_counters(cursor, counters)
        evidence = [(match[0], *event.evidence) for event, match in zip(new_events, matches)
                    if match and event.evidence]
        report.settled = settle_unknown(evidence)
        report.kept = _keep_early_evidence(cursor, evidence)
        report.suppressed = suppress_many([*_suppressions(new_events, matches),
                                           *_soft_bounce_suppressions(cursor, new_events, matches)])
    _prune_event_ids()
    return report


def _match(cursor, events):
    """For each event, (delivery id, campaign id, email) of its delivery log, or None."""
    by_delivery = [(event.delivery_id, event.campaign_id) for event in events]
    wanted = [pair for pair in by_delivery if pair[0] and pair[1]]
    found = {}
    if wanted:
        cursor.execute(MATCH_BY_DELIVERY_ID, {"ids": [p[0] for p in wanted], "campaigns": [p[1] for p in wanted]})
        found = {(pk, campaign_id): (pk, campaign_id, email) for pk, campaign_id, email in cursor.fetchall()}
    matches = [found.get(pair) for pair in by_delivery]

    # Events without our ids (e.g. an unsubscribe from SendGrid's own pages): by message id and address.
    fallback = {index: (event.message_id, normalize(event.email)) for index, event in enumerate(events)
                if matches[index] is None and event.message_id and event.email}
    if fallback:
        keys = list(set(fallback.values()))
        cursor.execute(MATCH_BY_MESSAGE_ID, {"message_ids": [k[0] for k in keys], "emails": [k[1] for k in keys]})
        by_message = {(message_id, email): (pk, campaign_id, email)
                      for message_id, email, pk, campaign_id in cursor.fetchall()}
        for index, key in fallback.items():
            matches[index] = by_message.get(key)
    return matches


def _by_first_occurrence(events, matches):
    grouped = defaultdict(list)
    for event, match in zip(events, matches):
        if match and event.first and event.first not in ENGAGEMENT:
            grouped[FIRST_OCCURRENCE[event.first]].append((match[0], event.timestamp))
    return grouped


def _engagement(events, matches):
    """The matched opens and clicks, as campaigns.engagement.opens_and_clicks takes them; after "delivered" is set above,
    which the machine-open delay rule reads."""
    opens = [opens_and_clicks.Open(match[0], event.timestamp, event.machine)
             for event, match in zip(events, matches) if match and event.first == "opened"]
    clicks = [opens_and_clicks.Click(match[0], event.timestamp, event.url)
              for event, match in zip(events, matches) if match and event.first == "clicked"]
    return opens, clicks


def _note_errors(cursor, events, matches):
    notes = [(match[0], event.note) for event, match in zip(events, matches) if match and event.note]
    if notes:
        cursor.execute(NOTE_ERRORS, {"ids": [n[0] for n in notes], "notes": [n[1] for n in notes]})


def _keep_early_evidence(cursor, evidence):
    if not evidence:
        return 0
    ids, statuses, notes = (list(column) for column in zip(*evidence))
    cursor.execute(KEEP_EARLY_EVIDENCE, {"ids": ids, "statuses": statuses, "notes": notes})
    return cursor.rowcount


def _bump_counters(cursor, counters):
    if not counters:
        return
    campaigns = sorted(counters)
    params = {"campaigns": campaigns}
    for name in COUNTERS:
        params[name] = [counters[campaign_id][name] for campaign_id in campaigns]
    sql = BUMP_COUNTERS.format(
        assignments=", ".join(f"{name} = c.{name} + v.{name}" for name in COUNTERS),
        arrays=", ".join(f"%({name})s::int[]" for name in COUNTERS),
        columns=", ".join(COUNTERS),
    )
    cursor.execute(sql, params)


def _suppressions(events, matches):
    for event, match in zip(events, matches):
        if event.suppression is None:
            continue
        email = match[2] if match else event.email
        yield email, event.suppression, event.source, match[1] if match else None


def _soft_bounce_suppressions(cursor, events, matches):
    """Addresses a new soft bounce brought to the limit; a soft bounce alone never suppresses."""
    emails = sorted({match[2] for event, match in zip(events, matches) if match and event.first == "soft_bounced"})
    if not emails:
        return []
    cursor.execute(SOFT_BOUNCED_TOO_OFTEN, {"emails": emails, "days": settings.SOFT_BOUNCE_DAYS,
                                            "limit": max(settings.SOFT_BOUNCE_LIMIT, 1)})
    return [(email, Suppression.Reason.BOUNCED, f"{count} soft bounces within {settings.SOFT_BOUNCE_DAYS} days", None)
            for email, count in cursor.fetchall()]


def _prune_event_ids():
    """Forget ids older than any retry a provider makes; cheap when there is nothing to forget."""
    with connection.cursor() as cursor:
        cursor.execute(PRUNE_EVENT_IDS, {"days": EVENT_ID_RETENTION_DAYS})
