"""The unsubscribe link in every email: a confirmation page (GET) and the RFC 8058 one-click POST."""

from django.core import signing
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from campaigns.audience import suppression
from campaigns.exceptions import UnknownDelivery
from campaigns.message import signed_links
from campaigns.models import Campaign, DeliveryLog
from campaigns.views import not_found


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
        delivery_id = signed_links.delivery_id_from_unsubscribe_token(token)
    except signing.BadSignature:
        return not_found(request)
    if request.method == "POST":
        try:
            done = suppression.unsubscribe(delivery_id)
        except UnknownDelivery:
            return not_found(request)
        return render(request, "campaigns/public/unsubscribed.html",
                      {"email": done.email, "sender": _sender_name(done.campaign_id)})
    log = DeliveryLog.objects.filter(pk=delivery_id).values("email", "campaign_id").first()
    if log is None:
        return not_found(request)
    return render(request, "campaigns/public/unsubscribe.html", {
        "email": log["email"], "sender": _sender_name(log["campaign_id"]),
        "already": suppression.is_suppressed(log["email"]),
    })
