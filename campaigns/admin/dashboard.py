"""The campaign dashboard: its figures on the campaign page, and the JSON the page polls while it is live."""

from django.http import JsonResponse
from django.utils import timezone
from django.utils.safestring import mark_safe

from datetime import timedelta

from django.db.models import Max, Sum

from campaigns import stats
from campaigns.admin.forms import zone_name
from campaigns.audience import plan
from campaigns.experiments import ab_tests
from campaigns.models import Campaign, DeliveryLog, SendBatch
from campaigns.sending import domain_groups, routing

POLL_SECONDS = 3
# The engagement cards, in order: keys of dashboard_data and its "rates" (labels and hover text: stats.FIGURES).
ENGAGEMENT_CARDS = ("delivered", "opened", "machine_opened", "clicked", "bounced", "soft_bounced", "complained",
                    "unsubscribed")
# The progress cards, in order (stats.FIGURES).
PROGRESS_CARDS = ("sent", "failed", "unknown", "skipped", "pending", "sending")
# A scheduled campaign's page polls: its audience is counted at most this often (a scan of its recipients).
AUDIENCE_MAX_AGE = 30
LIVE_STATUSES = (Campaign.Status.SCHEDULED, Campaign.Status.IN_PROGRESS, Campaign.Status.PAUSED)
S = Campaign.Status
ENDED_LABELS = {S.COMPLETED: "Completed", S.CANCELLED: "Cancelled", S.FAILED: "Failed"}


def quota_note(campaign: Campaign) -> str:
    """ "waiting for quota until HH:MM" while every account of the campaign's pool is at a limit."""
    until = campaign.quota_wait_until
    if campaign.status != Campaign.Status.IN_PROGRESS or until is None or until <= timezone.now():
        return ""
    return f"Waiting for quota until {timezone.localtime(until):%H:%M} ({zone_name()}): every account of the " \
           f"pool is at a limit; sending carries on by itself."


def domain_holds_note(campaign: Campaign) -> str:
    """ "Held back: yahoo.com, aol.com until HH:MM (12 recipients so far)" for each domain group whose
    servers deferred the campaign and whose hold has not ended (campaigns.sending.domain_groups)."""
    if campaign.status not in (Campaign.Status.IN_PROGRESS, Campaign.Status.PAUSED):
        return ""
    holds = domain_groups.held_now(campaign.pk)
    if not holds:
        return ""
    parts = [f"{', '.join(hold['domains'])} until {timezone.localtime(hold['until']):%H:%M} "
             f"({hold['group']}: {hold['rows']} recipient{'' if hold['rows'] == 1 else 's'} so far)" for hold in holds]
    return (f"Held back: {'; '.join(parts)} ({zone_name()}). Their servers deferred us; the other domains go on, "
            "and these recipients are sent when the hold ends.")


def in_ab_wait(campaign: Campaign) -> bool:
    """An A/B test under way: started, no winner yet (the rest is held)."""
    return (ab_tests.is_ab_test(campaign) and campaign.ab_winner_id is None and campaign.ab_test_ends_at is not None
            and campaign.status in (S.IN_PROGRESS, S.PAUSED))


def ab_wait_note(campaign: Campaign) -> str:
    """ "A/B test: waiting for the winner until 12:13 (B leads, 31 % vs 24 % opened by people)" while the held
    rest waits for the winner; "" otherwise."""
    if not in_ab_wait(campaign):
        return ""
    leads = ab_tests.leader_text(ab_tests.variant_figures(campaign.pk), campaign.ab_metric)
    metric = ab_tests.METRIC_WORDS.get(campaign.ab_metric, campaign.ab_metric)
    leads = f"{leads} {metric}" if "%" in leads else leads
    if ab_tests.waiting_for_test_sends(campaign):
        return (f"A/B test: the wait is over; the winner is chosen once every test recipient has been sent to "
                f"({leads}).")
    until = timezone.localtime(campaign.ab_test_ends_at)
    return f"A/B test: waiting for the winner until {until:%H:%M} {zone_name()} ({leads}); the rest gets it then."


def sending_rate(campaign: Campaign, figures):
    """Messages per second while it was sending: sent over the time from the start to the last send (a wait
    with nothing to send, as an A/B test's, does not lower it); None before a send."""
    if not figures.sent or campaign.started_at is None:
        return None
    last = DeliveryLog.objects.filter(campaign=campaign, sent_at__isnull=False).aggregate(m=Max("sent_at"))["m"]
    seconds = max(1.0, (last - campaign.started_at).total_seconds()) if last else None
    return round(figures.sent / seconds, 1) if seconds else None


def finish_estimate(campaign: Campaign, figures, rate=None) -> str:
    """When it should be done. During an A/B test's wait: the test's own rows, then the wait, then the held
    rest at the pool's rates (campaigns.sending.routing.estimated_finish)."""
    if campaign.status != S.IN_PROGRESS:
        return ""
    rate = rate if rate is not None else figures.emails_per_second
    if not in_ab_wait(campaign):
        when = routing.estimated_finish(campaign, figures.pending, rate)
        return f"{timezone.localtime(when):%Y-%m-%d %H:%M}" if when else ""
    now = timezone.now()
    held = SendBatch.objects.filter(campaign=campaign, status=SendBatch.Status.HELD).aggregate(n=Sum("size"))["n"] or 0
    test_done = routing.estimated_finish(campaign, figures.pending - held, rate) or now
    winner_at = max(test_done, campaign.ab_test_ends_at)
    rest = routing.estimated_finish(campaign, held, rate)
    when = winner_at + (rest - now if rest else timedelta(0))
    return f"{timezone.localtime(when):%Y-%m-%d %H:%M}" + (" (after the A/B wait)" if held else "")


def headline(campaign: Campaign, figures, found=None) -> str:
    """The header's one sentence: the audience before the start; progress of the audience while sending and
    once done; a cancelled campaign's sent and skipped apart."""
    status = campaign.status
    if status in plan.NOT_STARTED or campaign.started_at is None:
        found = found or plan.audience(campaign)
        return f"Audience: {plan.plan_lines(campaign, found)['audience_line']}"
    if status == S.CANCELLED:
        # Skipped since the start: left unsent by the cancel (or suppressed since); the Skipped card adds those
        # suppressed at the start, which the line below the header counts.
        not_sent = max(0, figures.skipped - figures.suppressed_at_start)
        parts = [f"{count:,} {word}" for count, word in ((figures.failed, "failed"), (figures.unknown, "unknown"),
                                                         (figures.pending, "still being sent")) if count]
        return (f"Cancelled: {figures.sent:,} of the audience of {figures.audience:,} sent, {not_sent:,} not sent"
                + "".join(f", {part}" for part in parts) + ".")
    return f"{figures.done:,} of {figures.audience:,} processed ({figures.progress_percent} %)"


def plan_note(campaign: Campaign, figures, found=None) -> dict:
    """Under the headline: the segment and suppressed (and, before the start, the A/B plan)."""
    if campaign.status in plan.NOT_STARTED or campaign.started_at is None:
        found = found or plan.audience(campaign)
        winner_at = ""
        if campaign.status == S.SCHEDULED and campaign.scheduled_at:
            winner_at = f"at {timezone.localtime(campaign.scheduled_at + campaign.ab_wait):%Y-%m-%d %H:%M} {zone_name()}"
        lines = plan.plan_lines(campaign, found, winner_at=winner_at)
        return {"segment_note": lines["segment_note"], "ab_line": lines["ab_line"], "audience": lines["audience"]}
    found = plan.Audience(None, figures.total, figures.suppressed_at_start, plan.describe(campaign.segment), True)
    return {"segment_note": plan.segment_note(found), "ab_line": "", "audience": figures.audience}


def dashboard_data(campaign: Campaign) -> dict:
    figures = stats.CampaignStats.of(campaign)
    not_started = campaign.status in plan.NOT_STARTED or campaign.started_at is None
    found = plan.audience(campaign, max_age=AUDIENCE_MAX_AGE) if not_started else None
    waiting = in_ab_wait(campaign)
    rate = sending_rate(campaign, figures) if waiting else figures.emails_per_second
    delivered_known = bool(figures.delivered) or routing.reports_deliveries(campaign)
    data = {**figures.as_dict(), "emails_per_second": rate}
    if found is not None:  # before the start, what is still to send is the audience, not every recipient imported
        data.update(pending=found.size, audience=found.size)
    if not delivered_known:  # not a 0 % rate: the path cannot know
        data["rates"] = {**data["rates"], "delivered": None}
    return {
        **data,
        "estimated_finish": finish_estimate(campaign, figures, rate),
        "rate_while_sending": waiting,
        "headline": headline(campaign, figures, found),
        **plan_note(campaign, figures, found),
        "ab_wait": ab_wait_note(campaign),
        "started": campaign.started_at is not None,
        "ended_label": ENDED_LABELS.get(campaign.status, "Finished"),
        "delivered_known": delivered_known,
        "delivered_unknown_text": "not reported by SMTP",
        "quota_wait": quota_note(campaign),
        "domain_holds": domain_holds_note(campaign),
        "pool": plan.pool_summary(campaign),
        "sends_per_account": routing.sends_per_account(campaign.pk),
        "status": campaign.status,
        "status_display": campaign.get_status_display(),
        "live": campaign.status in LIVE_STATUSES,
        "last_error": campaign.last_error,
        "pause_reason": campaign.pause_reason if campaign.status == Campaign.Status.PAUSED else "",
        **stats.sending_now(campaign),
        "chart_svg": stats.sends_chart_svg(stats.sends_chart_series(campaign)),
        "engagement_chart_svg": stats.engagement_chart_svg(stats.engagement_series(campaign)),
    }


def dashboard_context(campaign: Campaign) -> dict:
    data = dashboard_data(campaign)
    return {"dashboard": data, "chart_svg": mark_safe(data["chart_svg"]),
            "engagement_chart_svg": mark_safe(data["engagement_chart_svg"]),
            "engagement_cards": [(key, stats.figure_label(key), stats.figure_help(key), data[key], data["rates"][key])
                                 for key in ENGAGEMENT_CARDS],
            "figures": {key: {"label": label, "help": help_text} for key, (label, help_text) in stats.FIGURES.items()},
            "clicks_per_link": stats.clicks_per_link(campaign), "poll_seconds": POLL_SECONDS}


def dashboard_json(campaign: Campaign) -> JsonResponse:
    response = JsonResponse(dashboard_data(campaign))
    response["Cache-Control"] = "no-store"
    return response
