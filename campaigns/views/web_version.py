"""The web version of a campaign: {{ web_url }} in an email opens the message as that recipient got it,
and the public archive shows the campaigns staff chose to publish, with sample data only.

Both render the campaign's own HTML (never the tracked version: no open pixel, no tracking redirects);
the web version of an A/B test's recipient renders the variant it got, or for the rest the winner,
with recipient values escaped by the compiled plan as in the email. A forged, tampered or other kind
of token gets the 404 page. The token sits in the URL, so the page sends no Referer to the links in it.
"""

from django.conf import settings
from django.core import signing
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from campaigns.experiments import ab_tests
from campaigns.message import signed_links
from campaigns.message.rendering import compile_campaign, recipient_context
from campaigns.models import Campaign, DeliveryLog
from campaigns.services import SAMPLE_RECIPIENT
from campaigns.views import not_found

# Campaigns that reached their recipients (or are on the way); a draft is never public, even if marked.
PUBLISHED_STATUSES = (Campaign.Status.IN_PROGRESS, Campaign.Status.PAUSED, Campaign.Status.COMPLETED)


def _email_page(html):
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


@never_cache
@require_GET
def web_version(request, token):
    try:
        delivery_id = signed_links.delivery_id_from_web_token(token)
    except signing.BadSignature:
        return not_found(request)
    row = (DeliveryLog.objects.filter(pk=delivery_id)
           .values("recipient__email", "recipient__first_name", "recipient__last_name", "recipient__data",
                   "campaign__subject", "campaign__html_body", "campaign__text_body", "campaign__from_email",
                   "variant_id", "campaign__ab_winner_id").first())
    if row is None:
        return not_found(request)
    content = {"subject": row["campaign__subject"], "html_body": row["campaign__html_body"],
               "text_body": row["campaign__text_body"], "from_email": row["campaign__from_email"]}
    # A test row got its variant, the rest the winner; before the winner is chosen the rest got nothing yet.
    variant_id = row["variant_id"] or row["campaign__ab_winner_id"]
    if variant_id is not None:
        content = ab_tests.with_variant(content, variant_id)
    context = recipient_context(row["recipient__email"], row["recipient__first_name"], row["recipient__last_name"],
                                row["recipient__data"] or {}, signed_links.unsubscribe_url(delivery_id),
                                signed_links.web_url(delivery_id))
    compiled = compile_campaign(content["subject"], content["html_body"], content["text_body"])
    return _email_page(compiled.render(context).html)


def published():
    return Campaign.objects.filter(public_archive=True, status__in=PUBLISHED_STATUSES)


@require_GET
def archive_index(request):
    campaigns = published().order_by("-started_at").values("pk", "name", "subject", "started_at")
    entries = [{"url": reverse("public:archive-campaign", args=[c["pk"]]), "started_at": c["started_at"],
                "subject": _sample(c["subject"], "", "").subject} for c in campaigns[:500]]
    return render(request, "campaigns/public/archive.html", {"entries": entries})


@require_GET
def archive_campaign(request, campaign_id):
    campaign = published().filter(pk=campaign_id).values("subject", "html_body", "text_body").first()
    if campaign is None:
        return not_found(request)
    return _email_page(_sample(campaign["subject"], campaign["html_body"], campaign["text_body"],
                               web_url=settings.SITE_URL + reverse("public:archive-campaign", args=[campaign_id])).html)


def _sample(subject, html_body, text_body, web_url=""):
    """The message rendered with the sample recipient only: no real recipient's data is ever public."""
    sample = SAMPLE_RECIPIENT
    context = recipient_context(sample["email"], sample["first_name"], sample["last_name"], {},
                                f"{settings.SITE_URL}/archive/#unsubscribe-from-your-own-copy", web_url)
    return compile_campaign(subject, html_body, text_body).render(context)
