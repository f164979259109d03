"""The campaign's message preview: rendered for a chosen recipient, the first one, or sample data.

The email HTML is never part of an admin page: the page frames a URL of its own (the preview frame,
or the live frame the campaign form posts its HTML body to), whose relaxed, sandboxed
Content-Security-Policy is set in mailer_project/csp.py, so the admin pages keep the strict one.
"""

from django.conf import settings
from django.http import HttpResponse, HttpResponseNotAllowed
from django.template.response import TemplateResponse
from django.views.decorators.clickjacking import xframe_options_sameorigin

from campaigns.exceptions import MergeTagError
from campaigns.message.markdown import markdown_to_html
from campaigns.message.rendering import compile_campaign, recipient_context
from campaigns.models import Campaign
from campaigns.services import SAMPLE_RECIPIENT


def preview_recipient(campaign, email):
    """The chosen recipient's values (by address), else the first recipient's, else sample data."""
    recipients = campaign.recipients.values("email", "first_name", "last_name", "data")
    chosen = recipients.filter(email=email.strip().lower()).first() if email else None
    return chosen or recipients.order_by("id").first() or SAMPLE_RECIPIENT, bool(email) and chosen is None


def rendered_preview(request, campaign, *, real_data):
    """REAL_DATA: the user may see recipients' values; without it the preview shows sample data only."""
    email = request.GET.get("recipient", "") if real_data else ""
    recipient, not_found = preview_recipient(campaign, email) if real_data else (SAMPLE_RECIPIENT, False)
    context = {"recipient": recipient, "not_found": not_found, "asked_for": email,
               "is_sample": recipient is SAMPLE_RECIPIENT, "real_data_allowed": real_data}
    try:
        context["rendered"] = compile_campaign(campaign.subject, campaign.html_body, campaign.text_body).render(
            recipient_context(recipient["email"], recipient["first_name"], recipient["last_name"],
                              recipient["data"] or {}, f"{settings.SITE_URL}/u/preview-link-not-active/",
                              f"{settings.SITE_URL}/w/preview-link-not-active/"))
    except MergeTagError as error:
        context["error"] = str(error)
    return context


def preview_page(request, campaign, *, real_data, admin_context):
    context = {**admin_context, "opts": Campaign._meta, "title": f"Preview of “{campaign}”", "campaign": campaign,
               **rendered_preview(request, campaign, real_data=real_data)}
    return TemplateResponse(request, "admin/campaigns/campaign/preview.html", context)


@xframe_options_sameorigin
def email_html_frame(html):
    """The email HTML as a document of its own, which only the admin's own pages may frame."""
    return HttpResponse(html, content_type="text/html; charset=utf-8")


def preview_frame(request, campaign, *, real_data):
    """The HTML part the preview page shows (same recipient choice, same permission)."""
    context = rendered_preview(request, campaign, real_data=real_data)
    return email_html_frame(context["rendered"].html if "rendered" in context else "")


def live_preview_frame(request):
    """The campaign form's live preview: the HTML body as typed (POSTed), or the HTML a Markdown body makes,
    merge tags shown as written."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if request.POST.get("body_format") == Campaign.BodyFormat.MARKDOWN:
        return email_html_frame(markdown_to_html(request.POST.get("markdown_body", "")))
    return email_html_frame(request.POST.get("html_body", ""))
