"""Public endpoints reached from emails and from SendGrid: unsubscribe, open pixel, click redirect, webhook.

Each view is thin: it checks the signed token (or the webhook signature) and calls one plain function.
A forged or unknown token gets a 404 page and changes nothing.
"""

import base64

from django.core import signing
from django.db.models import F
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from campaigns import events, links, suppression, tracking
from campaigns.models import Campaign, DeliveryLog

# A transparent 1x1 GIF.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def _not_found(request):
    return render(request, "campaigns/public/not_found.html", status=404)


def _sender_name(campaign_id):
    from_email = Campaign.objects.filter(pk=campaign_id).values_list("from_email", flat=True).first() or ""
    name = from_email.split("<", 1)[0].strip().strip('"')
    return name or None


# RFC 8058: the one-click POST carries no cookie and no CSRF token, and must not be redirected.
@csrf_exempt
@never_cache
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token):
    try:
        delivery_id = links.delivery_id_from_unsubscribe_token(token)
    except signing.BadSignature:
        return _not_found(request)
    if request.method == "POST":
        try:
            done = suppression.unsubscribe(delivery_id)
        except suppression.UnknownDelivery:
            return _not_found(request)
        return render(request, "campaigns/public/unsubscribed.html",
                      {"email": done.email, "sender": _sender_name(done.campaign_id)})
    log = DeliveryLog.objects.filter(pk=delivery_id).values("email", "campaign_id").first()
    if log is None:
        return _not_found(request)
    return render(request, "campaigns/public/unsubscribe.html", {
        "email": log["email"], "sender": _sender_name(log["campaign_id"]),
        "already": suppression.is_suppressed(log["email"]),
    })


def _record_first(delivery_id, column, counter):
    """Set a delivery's first-event timestamp and bump its campaign's counter, once per recipient."""
    campaign_id = DeliveryLog.objects.filter(pk=delivery_id).values_list("campaign_id", flat=True).first()
    if campaign_id and DeliveryLog.objects.filter(pk=delivery_id, **{f"{column}__isnull": True}).update(
            **{column: timezone.now()}):
        Campaign.objects.filter(pk=campaign_id).update(**{counter: F(counter) + 1})


@never_cache
@require_GET
def open_pixel(request, token):
    try:
        delivery_id = links.delivery_id_from_open_token(token)
    except signing.BadSignature:
        return _not_found(request)
    _record_first(delivery_id, "opened_at", "opened_count")
    return HttpResponse(PIXEL_GIF, content_type="image/gif")


@never_cache
@require_GET
def click(request, token, index=None):
    try:
        delivery_id, index = links.click_from_token(token, index)
    except signing.BadSignature:
        return _not_found(request)
    version = (DeliveryLog.objects.filter(pk=delivery_id)
               .values_list("campaign_id", "campaign__updated_at").first())
    if version is None:
        return _not_found(request)
    targets = tracking.links_for_version(
        *version, lambda: Campaign.objects.filter(pk=version[0]).values_list("html_body", flat=True).first())
    if index >= len(targets):
        return _not_found(request)
    _record_first(delivery_id, "clicked_at", "clicked_count")
    return HttpResponseRedirect(targets[index])


@csrf_exempt
@require_POST
def sendgrid_webhook(request):
    body = request.body  # raw bytes: the signature covers them exactly
    try:
        events.verify(body, request.headers.get(events.SIGNATURE_HEADER),
                      request.headers.get(events.TIMESTAMP_HEADER))
        payload = events.parse(body)
    except events.WebhookRefused as refused:
        return JsonResponse({"error": str(refused)}, status=refused.status)
    return JsonResponse(events.apply_events(payload).as_dict())
