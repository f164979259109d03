"""The campaign dashboard: its figures on the campaign page, and the JSON the page polls while it is live."""

from django.http import JsonResponse
from django.utils.safestring import mark_safe

from campaigns import stats
from campaigns.models import Campaign

POLL_SECONDS = 3
LIVE_STATUSES = (Campaign.Status.SCHEDULED, Campaign.Status.IN_PROGRESS, Campaign.Status.PAUSED)


def dashboard_data(campaign: Campaign) -> dict:
    figures = stats.CampaignStats.of(campaign)
    return {
        "status": campaign.status,
        "status_display": campaign.get_status_display(),
        "live": campaign.status in LIVE_STATUSES,
        "last_error": campaign.last_error,
        "pause_reason": campaign.pause_reason if campaign.status == Campaign.Status.PAUSED else "",
        **figures.as_dict(),
        **stats.sending_now(campaign),
        "chart_svg": stats.sends_chart_svg(stats.sends_chart_series(campaign)),
    }


def dashboard_context(campaign: Campaign) -> dict:
    data = dashboard_data(campaign)
    return {"dashboard": data, "chart_svg": mark_safe(data["chart_svg"]), "poll_seconds": POLL_SECONDS}


def dashboard_json(campaign: Campaign) -> JsonResponse:
    response = JsonResponse(dashboard_data(campaign))
    response["Cache-Control"] = "no-store"
    return response
