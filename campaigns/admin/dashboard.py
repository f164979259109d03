"""The campaign dashboard: its figures on the campaign page, and the JSON the page polls while it is live."""

from django.http import JsonResponse
from django.utils import timezone
from django.utils.safestring import mark_safe

from campaigns import stats
from campaigns.admin.forms import zone_name
from campaigns.models import Campaign
from campaigns.sending import domain_groups, routing

POLL_SECONDS = 3
# The engagement cards: (figure in dashboard_data and its "rates", label).
ENGAGEMENT_CARDS = (("delivered", "Delivered"), ("opened", "Opened by people"), ("machine_opened", "Opened by machines"),
                    ("clicked", "Clicked"), ("bounced", "Bounced"), ("soft_bounced", "Soft bounces"),
                    ("complained", "Complained"),
                    ("unsubscribed", "Unsubscribed"))
LIVE_STATUSES = (Campaign.Status.SCHEDULED, Campaign.Status.IN_PROGRESS, Campaign.Status.PAUSED)


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


def finish_estimate(campaign: Campaign, figures) -> str:
    if campaign.status != Campaign.Status.IN_PROGRESS:
        return ""
    when = routing.estimated_finish(campaign, figures.pending, figures.emails_per_second)
    return f"{timezone.localtime(when):%Y-%m-%d %H:%M}" if when else ""


def dashboard_data(campaign: Campaign) -> dict:
    figures = stats.CampaignStats.of(campaign)
    return {
        "quota_wait": quota_note(campaign),
        "domain_holds": domain_holds_note(campaign),
        "estimated_finish": finish_estimate(campaign, figures),
        "pool": str(campaign.pool) if campaign.pool_id else "Default (from the environment)",
        "sends_per_account": routing.sends_per_account(campaign.pk),
        "status": campaign.status,
        "status_display": campaign.get_status_display(),
        "live": campaign.status in LIVE_STATUSES,
        "last_error": campaign.last_error,
        "pause_reason": campaign.pause_reason if campaign.status == Campaign.Status.PAUSED else "",
        **figures.as_dict(),
        **stats.sending_now(campaign),
        "chart_svg": stats.sends_chart_svg(stats.sends_chart_series(campaign)),
        "engagement_chart_svg": stats.engagement_chart_svg(stats.engagement_series(campaign)),
    }


def dashboard_context(campaign: Campaign) -> dict:
    data = dashboard_data(campaign)
    return {"dashboard": data, "chart_svg": mark_safe(data["chart_svg"]),
            "engagement_chart_svg": mark_safe(data["engagement_chart_svg"]),
            "engagement_cards": [(key, label, data[key], data["rates"][key]) for key, label in ENGAGEMENT_CARDS],
            "clicks_per_link": stats.clicks_per_link(campaign), "poll_seconds": POLL_SECONDS}


def dashboard_json(campaign: Campaign) -> JsonResponse:
    response = JsonResponse(dashboard_data(campaign))
    response["Cache-Control"] = "no-store"
    return response
