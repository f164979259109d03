"""Numbers derived from a campaign's denormalised counters, and the sends-per-minute series.

The campaign list, the campaign dashboard, its JSON endpoint and the admin index all read these, so a
figure means the same thing everywhere. Nothing here counts delivery logs per campaign row.

Accepted (the API's `accepted_rate`, formerly `delivery_rate`) = sent / (sent + failed + unknown): the share
of the messages tried that the mail server or provider accepted. Skipped recipients (suppressed, or left
unsent by a cancel) were never tried, so they count towards progress but not towards it. Whether mail
reached the mailbox is Delivered, which only a provider that reports deliveries knows (not plain SMTP).

The audience (campaigns.audience.plan) is who the campaign mails: the segment applied, suppressed addresses
left out. Progress is of the audience: the recipients suppressed at the start are in total_recipients
(they have a skipped row) but neither in the audience nor in what was done.

Each figure has one name and one meaning on every page (FIGURES: the label and the one-line explanation
shown on hover); "Opened by people" counts a person's open or a click (a click proves the message was
read even where images were blocked: campaigns.engagement.opens_and_clicks).

Engagement rates are per recipient, out of those delivered (SendGrid reports deliveries); where no
delivery is reported (the SMTP path), out of those sent. Bounces are out of those sent. Opens by
people and by machines are apart (campaigns.engagement.opens_and_clicks); the opens-and-clicks chart reads the hourly
counters (EngagementHour), a few rows per campaign, once the campaign is six hours old; before that the
per-minute ones (EngagementMinute): per minute in its first hour, per 5 minutes to six hours.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Q, Sum
from django.utils import timezone

from campaigns.models import (
    Campaign, CampaignLink, DeliveryLog, EngagementHour, EngagementMinute, SendBatch, SendingAccountUsage,
)

GOOD_RATE = 95.0
FAIR_RATE = 80.0
# Minutes older than this are complete (a batch's sent_at is its transaction's start), so they are
# cached and never queried again; only the last few minutes are read on each poll. Usually they are
# complete much sooner: see settled_before.
SETTLED_AFTER = timedelta(minutes=2)
MAX_BARS = 120


# One name and one explanation per figure, for every page that shows it (the campaign page, the A/B panel,
# the follow-up page) and for docs/staff-guide's table: key -> (label, explanation shown on hover).
FIGURES = {
    "audience": ("Audience", "The people this campaign mails: its recipients matching the segment, suppressed "
                             "addresses left out."),
    "sent": ("Sent", "Messages the mail server or provider accepted."),
    "failed": ("Failed", "Messages refused for good, or still refused after every retry."),
    "unknown": ("Unknown", "The connection was lost while the message was handed over: it may have been "
                           "accepted. Never sent again on its own."),
    "skipped": ("Skipped", "Not sent: suppressed (at the start, or since), or left unsent by a cancel."),
    "pending": ("Pending", "Not sent yet."),
    "sending": ("Sending now", "Recipients of the batches being sent now, not yet answered by the provider."),
    "accepted_rate": ("Accepted", "Sent ÷ (sent + failed + unknown): the share of the messages tried that were "
                                  "accepted. Skipped recipients were not tried. Not the same as delivered."),
    "delivered": ("Delivered", "Reported delivered to the mailbox by the provider (SendGrid, SES). Plain SMTP "
                               "reports no deliveries."),
    "opened": ("Opened by people", "Recipients who opened it (a person, not a privacy proxy or scanner) or "
                                   "clicked a link in it."),
    "machine_opened": ("Opened by machines", "Recipients whose message only a machine opened (Apple's privacy "
                                             "proxy, a link scanner); not counted as opened."),
    "clicked": ("Clicked", "Recipients who clicked at least one link."),
    "bounced": ("Bounced", "Recipients whose address was refused for good (a hard bounce); they are suppressed."),
    "soft_bounced": ("Soft bounces", "Recipients whose mail came back for a passing reason (a full mailbox)."),
    "complained": ("Complained", "Recipients who marked it as spam."),
    "unsubscribed": ("Unsubscribed", "Recipients who unsubscribed from it."),
}


def figure_label(key):
    return FIGURES[key][0]


def figure_help(key):
    return FIGURES[key][1]


def rate_level(rate):
    """'good' above 95 %, 'fair' from 80 to 95 %, 'poor' below 80 %, '' when nothing was attempted."""
    if rate is None:
        return ""
    if rate > GOOD_RATE:
        return "good"
    return "fair" if rate >= FAIR_RATE else "poor"


# The mailbox providers' bulk-sender rules (Gmail and Yahoo, February 2024): complaints under 0.3 % of
# delivered mail, better under 0.1 %.
COMPLAINT_WARNING_PERCENT = 0.1
COMPLAINT_LIMIT_PERCENT = 0.3


def complaint_rate(complained, delivered, sent, base_note=None):
    """The complaint rate and what staff should read from it: {"rate": percent or None, "level": "" | "ok" |
    "warning" | "danger", "base": what it is out of, "message"}. Out of delivered where the provider reports
    deliveries; else out of sent (SMTP reports none), which the base says."""
    base, count = (delivered, "delivered") if delivered else (sent, "sent")
    base_text = base_note or (f"of {base:,} delivered" if delivered else
                              f"of {base:,} sent (no deliveries reported, as on SMTP: out of sent)")
    if not base:
        return {"rate": None, "level": "", "base": base_text, "message": ""}
    rate = round(100 * complained / base, 2)
    if rate >= COMPLAINT_LIMIT_PERCENT:
        level, message = "danger", (f"At or above {COMPLAINT_LIMIT_PERCENT} %, Gmail's and Yahoo's limit for bulk "
                                    f"senders: mail from this sender is likely to be refused or sent to spam.")
    elif rate >= COMPLAINT_WARNING_PERCENT:
        level, message = "warning", (f"At or above {COMPLAINT_WARNING_PERCENT} %: keep it well under "
                                     f"{COMPLAINT_LIMIT_PERCENT} %, Gmail's and Yahoo's limit for bulk senders.")
    else:
        level, message = "ok", f"Under {COMPLAINT_WARNING_PERCENT} %."
    return {"rate": rate, "level": level, "base": base_text, "message": message}


@dataclass(frozen=True)
class CampaignStats:
    total: int
    sent: int
    failed: int
    skipped: int
    unknown: int
    delivered: int
    opened: int
    clicked: int
    bounced: int
    started_at: datetime | None
    completed_at: datetime | None
    machine_opened: int = 0
    complained: int = 0
    unsubscribed: int = 0
    soft_bounced: int = 0
    suppressed_at_start: int = 0

    @classmethod
    def of(cls, campaign: Campaign) -> "CampaignStats":
        return cls(
            total=campaign.total_recipients, sent=campaign.sent_count, failed=campaign.failed_count,
            skipped=campaign.skipped_count, unknown=campaign.unknown_count, delivered=campaign.delivered_count,
            opened=campaign.opened_count, clicked=campaign.clicked_count, bounced=campaign.bounced_count,
            started_at=campaign.started_at, completed_at=campaign.completed_at,
            machine_opened=campaign.machine_opened_count, complained=campaign.complained_count,
            unsubscribed=campaign.unsubscribed_count, soft_bounced=campaign.soft_bounced_count,
            suppressed_at_start=campaign.suppressed_at_start,
        )

    @property
    def processed(self):
        return self.sent + self.failed + self.skipped + self.unknown

    @property
    def pending(self):
        return max(0, self.total - self.processed)

    @property
    def attempted(self):
        return self.sent + self.failed + self.unknown

    @property
    def audience(self):
        """Who the campaign mails (after the start: its rows but those suppressed then)."""
        return max(0, self.total - self.suppressed_at_start)

    @property
    def done(self):
        """Of the audience, those with a result (sent, failed, unknown, or skipped since the start)."""
        return max(0, self.processed - self.suppressed_at_start)

    @property
    def progress_percent(self):
        return min(100, int(100 * self.done / self.audience)) if self.audience else 0

    @property
    def delivery_rate(self):
        """Percent of attempted recipients that were sent, or None before any attempt."""
        return round(100 * self.sent / self.attempted, 1) if self.attempted else None

    @property
    def rate_level(self):
        return rate_level(self.delivery_rate)

    @property
    def duration(self) -> timedelta | None:
        if not self.started_at:
            return None
        return (self.completed_at or timezone.now()) - self.started_at

    @property
    def emails_per_second(self):
        seconds = self.duration.total_seconds() if self.duration else 0
        return round(self.sent / seconds, 1) if seconds > 0 else None

    @property
    def engagement_known(self):
        return any((self.delivered, self.opened, self.machine_opened, self.clicked, self.bounced, self.soft_bounced,
                    self.complained, self.unsubscribed))

    @property
    def engagement_base(self):
        """What engagement rates are out of: delivered where the provider reports it, else sent."""
        return self.delivered or self.sent

    def engagement_rates(self):
        """Percent of recipients, per figure (None before anything was sent)."""
        def percent(count, base):
            return round(100 * count / base, 1) if base else None

        base = self.engagement_base
        # No delivery reported at all is the SMTP path (it has no delivery events), not a 0 % rate.
        return {"delivered": percent(self.delivered, self.sent) if self.delivered else None, "opened": percent(self.opened, base),
                "machine_opened": percent(self.machine_opened, base), "clicked": percent(self.clicked, base),
                "bounced": percent(self.bounced, self.sent), "soft_bounced": percent(self.soft_bounced, self.sent),
                "complained": percent(self.complained, base),
                "unsubscribed": percent(self.unsubscribed, base)}

    def as_dict(self):
        duration = self.duration
        return {
            "total": self.total, "sent": self.sent, "failed": self.failed, "skipped": self.skipped,
            "unknown": self.unknown, "pending": self.pending, "processed": self.processed,
            "audience": self.audience, "suppressed_at_start": self.suppressed_at_start, "done": self.done,
            "progress_percent": self.progress_percent, "accepted_rate": self.delivery_rate,
            "delivery_rate": self.delivery_rate,  # the same figure, by its former name (API clients)
            "rate_level": self.rate_level, "delivered": self.delivered, "opened": self.opened,
            "clicked": self.clicked, "bounced": self.bounced, "engagement_known": self.engagement_known,
            "machine_opened": self.machine_opened, "complained": self.complained, "unsubscribed": self.unsubscribed,
            "soft_bounced": self.soft_bounced,
            "rates": self.engagement_rates(),
            "complaint_rate": complaint_rate(self.complained, self.delivered, self.sent),
            "started_at": _local_iso(self.started_at), "completed_at": _local_iso(self.completed_at),
            "duration": format_duration(duration), "emails_per_second": self.emails_per_second,
        }


def sending_now(campaign: Campaign) -> dict:
    """What is being sent right now: the batches under a claim and their rows still without a result
    (a row stays pending until its result; the claim is its batch's, campaigns.models.SendBatch)."""
    if campaign.status not in (Campaign.Status.IN_PROGRESS, Campaign.Status.PAUSED, Campaign.Status.CANCELLED):
        return {"sending_batches": 0, "sending": 0}
    batches = list(SendBatch.objects.filter(campaign=campaign, status=SendBatch.Status.SENDING)
                   .values_list("number", "first_id", "last_id"))
    if not batches:
        return {"sending_batches": 0, "sending": 0}
    # Each batch's id range bounds the rows read: by batch number alone a 10M campaign's page counted
    # through every pending row of the campaign (1.4 s while its start was still being made).
    in_batches = Q()
    for number, first_id, last_id in batches:
        in_batches |= Q(batch_number=number, id__gte=first_id, id__lte=last_id)
    rows = DeliveryLog.objects.filter(in_batches, campaign=campaign, status=DeliveryLog.Status.PENDING).count()
    return {"sending_batches": len(batches), "sending": rows}


def _local_iso(value):
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z") if value else None


def format_duration(value: timedelta | None):
    if value is None:
        return None
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {seconds:02d}s" if hours else f"{minutes}m {seconds:02d}s"


# --- sends over time ---------------------------------------------------------------------------

_PER_MINUTE = """
SELECT date_trunc('minute', sent_at) AS minute, count(*)
FROM campaigns_deliverylog
WHERE campaign_id = %s AND sent_at IS NOT NULL AND sent_at >= %s AND sent_at < %s
GROUP BY 1 ORDER BY 1
"""
_EPOCH = datetime(2000, 1, 1, tzinfo=dt_timezone.utc)
_FAR = datetime(3000, 1, 1, tzinfo=dt_timezone.utc)


def _count_per_minute(campaign_id, since, until):
    with connection.cursor() as cursor:
        cursor.execute(_PER_MINUTE, [campaign_id, since, until])
        return {minute.isoformat(): count for minute, count in cursor.fetchall()}


# The start of the oldest transaction still open in another client session of this database (not
# autovacuum's): a delivery row's sent_at is its transaction's start, so no row still to be committed
# can have a sent_at before it. A session of another role whose details PostgreSQL hides (state NULL:
# no pg_read_all_stats) could be such a writer: then only SETTLED_AFTER is trusted.
OLDEST_OPEN_TRANSACTION = """
SELECT min(xact_start), now(), count(*) FILTER (WHERE state IS NULL) FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
"""


def settled_before() -> datetime:
    """The start of the first minute that rows may still be written into: the minute of the oldest open
    transaction, or of SETTLED_AFTER ago if that is later. A 10M campaign sending 6,000 emails a second
    made the chart re-read two to three minutes of rows (up to a million) on each page load; now it reads
    the current minute's (issue 26)."""
    with connection.cursor() as cursor:
        cursor.execute(OLDEST_OPEN_TRANSACTION)
        oldest, now, hidden = cursor.fetchone()  # now: the database's clock, the one sent_at is written with
    boundary = now - SETTLED_AFTER if hidden else max(oldest or now, now - SETTLED_AFTER)
    return boundary.replace(second=0, microsecond=0)


def sends_per_minute(campaign: Campaign) -> list[tuple[datetime, int]]:
    """(minute, messages sent) for the campaign, oldest first.

    Settled minutes are cached in Redis and extended incrementally, so each call reads only the
    rows sent since the last settled minute, over the (campaign, sent_at) index.
    """
    if not campaign.started_at:
        return []
    key = f"campaign-sends-per-minute:{campaign.pk}:{campaign.created_at.timestamp()}"
    cached = cache.get(key) or {"until": _EPOCH.isoformat(), "buckets": {}}
    settled = settled_before()
    until = datetime.fromisoformat(cached["until"])
    if until < settled:
        cached["buckets"].update(_count_per_minute(campaign.pk, until, settled))
        cached["until"] = settled.isoformat()
        cache.set(key, cached, timeout=7 * 24 * 3600)
        until = settled
    buckets = {**cached["buckets"], **_count_per_minute(campaign.pk, until, _FAR)}
    return sorted((datetime.fromisoformat(minute), count) for minute, count in buckets.items())


def sends_chart_series(campaign: Campaign, max_bars=MAX_BARS):
    """The per-minute series filled with zeros and merged into at most MAX_BARS bars: (start, minutes, count)."""
    points = sends_per_minute(campaign)
    if not points:
        return []
    first, last = points[0][0], points[-1][0]
    minutes = int((last - first).total_seconds() // 60) + 1
    width = max(1, -(-minutes // max_bars))  # minutes per bar, rounded up
    bars = [0] * (-(-minutes // width))
    for minute, count in points:
        bars[int((minute - first).total_seconds() // 60) // width] += count
    return [(first + timedelta(minutes=i * width), width, count) for i, count in enumerate(bars)]


def sends_chart_svg(series, width=640, height=180):
    """A bar chart of sends over time as an inline SVG string (numbers and times only, no user text)."""
    if not series:
        return (f'<svg class="sends-chart" viewBox="0 0 {width} 30" role="img" aria-label="No sends yet">'
                f'<text x="{width // 2}" y="20" text-anchor="middle" class="empty">No sends yet</text></svg>')
    pad_left, pad_bottom, pad_top = 48, 22, 8
    plot_w, plot_h = width - pad_left - 4, height - pad_bottom - pad_top
    peak = max(count for _, _, count in series) or 1
    bar_w = min(plot_w / len(series), 40)  # a short campaign gets a few slim bars, not one block
    minutes = series[0][1]
    unit = "minute" if minutes == 1 else f"{minutes} minutes"
    parts = [f'<svg class="sends-chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="Messages sent per {unit}, peak {peak}">',
             f'<text x="{pad_left - 6}" y="{pad_top + 9}" text-anchor="end" class="axis">{peak:,}</text>',
             f'<text x="{pad_left - 6}" y="{pad_top + plot_h}" text-anchor="end" class="axis">0</text>',
             f'<line x1="{pad_left}" y1="{pad_top + plot_h}" x2="{width - 4}" y2="{pad_top + plot_h}" class="base"/>']
    for i, (start, _, count) in enumerate(series):
        h = plot_h * count / peak
        x = pad_left + i * bar_w
        label = f"{timezone.localtime(start):%H:%M}: {count:,} sent"
        parts.append(f'<rect x="{x:.1f}" y="{pad_top + plot_h - h:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                     f'height="{h:.1f}" class="bar"><title>{label}</title></rect>')
    first, last = series[0][0], series[-1][0] + timedelta(minutes=minutes)
    parts.append(f'<text x="{pad_left}" y="{height - 6}" class="axis">{timezone.localtime(first):%H:%M}</text>')
    parts.append(f'<text x="{width - 4}" y="{height - 6}" text-anchor="end" class="axis">'
                 f'{timezone.localtime(last):%H:%M} (per {unit})</text>')
    parts.append("</svg>")
    return "".join(parts)


# --- opens and clicks over time, clicks per link -------------------------------------------------

MAX_HOURS = 168  # a chart of at most a week of hourly points; longer spans merge hours per point
# A young campaign's chart reads the per-minute counters (EngagementMinute; the hourly ones would draw its
# first hour as one flat point): (campaign age up to, minutes per point). Older ones read the hourly counters.
FINE_BUCKETS = ((timedelta(hours=1), 1), (timedelta(hours=6), 5))


def engagement_bucket_minutes(age: timedelta):
    """Minutes per point of the opens-and-clicks chart for a campaign started AGE ago; None: hourly counters."""
    for limit, minutes in FINE_BUCKETS:
        if age <= limit:
            return minutes
    return None


def engagement_series(campaign: Campaign, max_points=MAX_HOURS, now=None):
    """(start, minutes per point, opens, machine opens, clicks) per point, zeros filled in: per minute in the
    campaign's first hour, per 5 minutes to 6 hours (the per-minute counters), then per hour (the hourly ones)."""
    now = now or timezone.now()
    minutes = engagement_bucket_minutes(now - campaign.started_at) if campaign.started_at else None
    if minutes is not None:
        return _fine_series(campaign, minutes, now)
    rows = list(EngagementHour.objects.filter(campaign=campaign).order_by("hour")
                .values_list("hour", "opens", "machine_opens", "clicks"))
    if not rows:
        return []
    first, last = rows[0][0], rows[-1][0]
    hours = int((last - first).total_seconds() // 3600) + 1
    width = max(1, -(-hours // max_points))
    points = [[0, 0, 0] for _ in range(-(-hours // width))]
    for hour, opens, machine_opens, clicks in rows:
        point = points[int((hour - first).total_seconds() // 3600) // width]
        point[0] += opens
        point[1] += machine_opens
        point[2] += clicks
    return [(first + timedelta(hours=i * width), 60 * width, *point) for i, point in enumerate(points)]


def _fine_series(campaign, minutes, now):
    """From the start to now in MINUTES-wide points, from the per-minute counters (at most 360 rows); empty
    when nothing was opened or clicked yet."""
    start = campaign.started_at.replace(second=0, microsecond=0)
    rows = list(EngagementMinute.objects.filter(campaign=campaign, minute__gte=start).order_by("minute")
                .values_list("minute", "opens", "machine_opens", "clicks"))
    if not rows:
        return []
    width = timedelta(minutes=minutes)
    points = max(1, int((max(now, rows[-1][0]) - start) // width) + 1)
    series = [[start + i * width, minutes, 0, 0, 0] for i in range(points)]
    for at, opens, machine, clicks in rows:
        point = series[int((at - start) // width)]
        point[2] += opens
        point[3] += machine
        point[4] += clicks
    return [tuple(point) for point in series]


ENGAGEMENT_LINES = (("opens", "opened by people"), ("machine", "opened by machines"), ("clicks", "clicked"))


def _unit(minutes):
    if minutes == 1:
        return "minute"
    if minutes % 60 == 0:
        return "hour" if minutes == 60 else f"{minutes // 60} hours"
    return f"{minutes} minutes"


def engagement_chart_svg(series, width=640, height=180):
    """Opens (people, machines) and clicks over time as lines in an inline SVG (numbers and times only)."""
    if not series:
        return (f'<svg class="engagement-chart" viewBox="0 0 {width} 30" role="img" aria-label="No opens or clicks '
                f'yet"><text x="{width // 2}" y="20" text-anchor="middle" class="empty">No opens or clicks yet</text>'
                '</svg>')
    pad_left, pad_bottom, pad_top = 48, 22, 24  # the legend is above the plot
    plot_w, plot_h = width - pad_left - 4, height - pad_bottom - pad_top
    peak = max(max(point[2:]) for point in series) or 1
    minutes = series[0][1]
    unit = _unit(minutes)
    time_format = "%H:%M" if minutes < 60 else "%d %b %H:%M"
    parts = [f'<svg class="engagement-chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="Opens and clicks per {unit}, peak {peak}">',
             f'<text x="{pad_left - 6}" y="{pad_top + 9}" text-anchor="end" class="axis">{peak:,}</text>',
             f'<text x="{pad_left - 6}" y="{pad_top + plot_h}" text-anchor="end" class="axis">0</text>',
             f'<line x1="{pad_left}" y1="{pad_top + plot_h}" x2="{width - 4}" y2="{pad_top + plot_h}" class="base"/>']
    drawn = series * 2 if len(series) == 1 else series  # one point is drawn as a level line
    step = plot_w / (len(drawn) - 1)
    for index, (name, label) in enumerate(ENGAGEMENT_LINES):
        coords = " ".join(f"{pad_left + i * step:.1f},{pad_top + plot_h - plot_h * point[2 + index] / peak:.1f}"
                          for i, point in enumerate(drawn))
        total = sum(point[2 + index] for point in series)
        parts.append(f'<polyline points="{coords}" class="line {name}"><title>{total:,} {label}</title></polyline>')
        parts.append(f'<text x="{pad_left + index * 170}" y="12" class="legend {name}">'
                     f'{label}: {total:,}</text>')
    first, last = series[0][0], series[-1][0] + timedelta(minutes=minutes)
    parts.append(f'<text x="{pad_left}" y="{height - 6}" class="axis">{timezone.localtime(first):{time_format}}</text>')
    parts.append(f'<text x="{width - 4}" y="{height - 6}" text-anchor="end" class="axis">'
                 f'{timezone.localtime(last):{time_format}} (per {unit})</text>')
    parts.append("</svg>")
    return "".join(parts)


def clicks_per_link(campaign: Campaign, limit=20):
    """The most clicked links: (url, recipients who clicked it, percent of the engagement base)."""
    base = CampaignStats.of(campaign).engagement_base
    links = CampaignLink.objects.filter(campaign=campaign).order_by("-clickers", "id")[:limit]
    return [(link.url, link.clickers, round(100 * link.clickers / base, 1) if base else None) for link in links]


def campaign_figures(campaign: Campaign) -> dict:
    """Every figure of the campaign page, for the API: status, counters, rates, what is sending now and the
    most clicked links."""
    return {"status": campaign.status, **CampaignStats.of(campaign).as_dict(), **sending_now(campaign),
            "clicks_per_link": [{"url": url, "clickers": clickers, "percent": percent}
                                for url, clickers, percent in clicks_per_link(campaign)]}


# --- admin index ---------------------------------------------------------------------------------

LIVE = (Campaign.Status.IN_PROGRESS, Campaign.Status.PAUSED)


def overview(recent=5):
    """Campaigns by status, emails sent today and in the last 7 days, failure rate, recent campaigns."""
    now = timezone.now()
    week_ago = now - timedelta(days=7)
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    by_status = dict(Campaign.objects.order_by().values("status").annotate(n=Count("id")).values_list("status", "n"))
    active = Campaign.objects.filter(Q(status__in=LIVE) | Q(completed_at__gte=week_ago) | Q(started_at__gte=week_ago))
    sent_today = sent_week = 0
    for campaign in active.filter(started_at__isnull=False).only("pk", "created_at", "started_at"):
        for minute, count in sends_per_minute(campaign):
            if minute >= week_ago:
                sent_week += count
                if minute >= today:
                    sent_today += count
    totals = active.aggregate(sent=Sum("sent_count"), failed=Sum("failed_count"), unknown=Sum("unknown_count"))
    attempted = sum(totals[k] or 0 for k in ("sent", "failed", "unknown"))
    failure_rate = round(100 * (totals["failed"] or 0) / attempted, 1) if attempted else None
    return {
        "by_status": [(value, label, by_status.get(value, 0)) for value, label in Campaign.Status.choices],
        "sent_today": sent_today,
        "sent_week": sent_week,
        "failure_rate": failure_rate,
        "failure_level": rate_level(None if failure_rate is None else 100 - failure_rate),
        "recent": list(Campaign.objects.order_by("-created_at")[:recent]),
    }


ACCOUNT_COMPLAINT_DAYS = 30


def account_complaint_rate(account, days=ACCOUNT_COMPLAINT_DAYS):
    """An account's complaint rate over the last DAYS: its recipients' complaints (SendGrid, SES, ARF by mail)
    out of the messages it sent (SendingAccountUsage; deliveries are not counted per account)."""
    since = timezone.now() - timedelta(days=days)
    sent = SendingAccountUsage.objects.filter(account=account, hour__gte=since).aggregate(n=Sum("sent"))["n"] or 0
    complained = DeliveryLog.objects.filter(provider=account.name, complained_at__gte=since).count()
    figures = complaint_rate(complained, 0, sent, base_note=f"of {sent:,} sent through it in the last {days} days")
    return {**figures, "complained": complained, "sent": sent}
