"""The campaign's message preview: rendered for a chosen recipient, the first one, or sample data."""

from django.conf import settings
from django.template.response import TemplateResponse

from campaigns.exceptions import MergeTagError
from campaigns.message.rendering import compile_campaign, recipient_context
from campaigns.models import Campaign
from campaigns.services import SAMPLE_RECIPIENT


def preview_recipient(campaign, email):
    """The chosen recipient's values (by address), else the first recipient's, else sample data."""
    recipients = campaign.recipients.values("email", "first_name", "last_name", "data")
    chosen = recipients.filter(email=email.strip().lower()).first() if email else None
    return chosen or recipients.order_by("id").first() or SAMPLE_RECIPIENT, bool(email) and chosen is None


def preview_page(request, campaign, *, real_data, admin_context):
    """REAL_DATA: the user may see recipients' values; without it the preview shows sample data only."""
    email = request.GET.get("recipient", "") if real_data else ""
    recipient, not_found = preview_recipient(campaign, email) if real_data else (SAMPLE_RECIPIENT, False)
    context = {
        **admin_context,
        "opts": Campaign._meta, "title": f"Preview of “{campaign}”", "campaign": campaign,
        "recipient": recipient, "not_found": not_found, "asked_for": email,
        "is_sample": recipient is SAMPLE_RECIPIENT, "real_data_allowed": real_data,
    }
    try:
        rendered = compile_campaign(campaign.subject, campaign.html_body, campaign.text_body).render(
            recipient_context(recipient["email"], recipient["first_name"], recipient["last_name"],
                              recipient["data"] or {}, f"{settings.SITE_URL}/u/preview-link-not-active/",
                              f"{settings.SITE_URL}/w/preview-link-not-active/"))
        context["rendered"] = rendered
    except MergeTagError as error:
        context["error"] = str(error)
    return TemplateResponse(request, "admin/campaigns/campaign/preview.html", context)
