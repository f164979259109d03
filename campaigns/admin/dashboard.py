"""The campaign dashboard (its figures and a JSON endpoint the page polls) and the message preview."""

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils.safestring import mark_safe

from campaigns import stats
from campaigns.models import Campaign
from campaigns.rendering import MergeTagError, compile_campaign, recipient_context
from campaigns.sending.control import SAMPLE_RECIPIENT

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
        "chart_svg": stats.sends_chart_svg(stats.sends_chart_series(campaign)),
    }


def dashboard_context(campaign: Campaign) -> dict:
    data = dashboard_data(campaign)
    return {"dashboard": data, "chart_svg": mark_safe(data["chart_svg"]), "poll_seconds": POLL_SECONDS}


def _viewable(model_admin, request, campaign_id):
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    if not model_admin.has_view_or_change_permission(request, campaign):
        raise PermissionDenied
    return campaign


def dashboard_json_view(model_admin, request, campaign_id):
    response = JsonResponse(dashboard_data(_viewable(model_admin, request, campaign_id)))
    response["Cache-Control"] = "no-store"
    return response


def preview_recipient(campaign, email):
    """The chosen recipient's values (by address), else the first recipient's, else sample data."""
    recipients = campaign.recipients.values("email", "first_name", "last_name", "data")
    chosen = recipients.filter(email=email.strip().lower()).first() if email else None
    return chosen or recipients.order_by("id").first() or SAMPLE_RECIPIENT, bool(email) and chosen is None


def preview_view(model_admin, request, campaign_id):
    campaign = _viewable(model_admin, request, campaign_id)
    real_data = model_admin.has_export_recipients_permission(request, campaign)
    email = request.GET.get("recipient", "") if real_data else ""
    recipient, not_found = preview_recipient(campaign, email) if real_data else (SAMPLE_RECIPIENT, False)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": Campaign._meta, "title": f"Preview of “{campaign}”", "campaign": campaign,
        "recipient": recipient, "not_found": not_found, "asked_for": email,
        "is_sample": recipient is SAMPLE_RECIPIENT, "real_data_allowed": real_data,
    }
    try:
        rendered = compile_campaign(campaign.subject, campaign.html_body, campaign.text_body).render(
            recipient_context(recipient["email"], recipient["first_name"], recipient["last_name"],
                              recipient["data"] or {}, f"{settings.SITE_URL}/u/preview-link-not-active/"))
        context["rendered"] = rendered
    except MergeTagError as error:
        context["error"] = str(error)
    return TemplateResponse(request, "admin/campaigns/campaign/preview.html", context)
