"""The open pixel and the click redirect in tracked emails (SMTP path; the links are written by
campaigns.click_tracking). Each records the recipient's first open (a person's or a machine's) or
click, and the first click on each link, through campaigns.engagement."""

import base64

from django.core import signing
from django.http import HttpResponse, HttpResponseRedirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from campaigns import click_tracking, engagement, signed_links
from campaigns.models import Campaign, DeliveryLog
from campaigns.views import not_found

# A transparent 1x1 GIF.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


@never_cache
@require_GET
def open_pixel(request, token):
    try:
        delivery_id = signed_links.delivery_id_from_open_token(token)
    except signing.BadSignature:
        return not_found(request)
    engagement.record_open(delivery_id, request.headers.get("User-Agent"))
    return HttpResponse(PIXEL_GIF, content_type="image/gif")


@never_cache
@require_GET
def click(request, token, index=None):
    try:
        delivery_id, index = signed_links.click_from_token(token, index)
    except signing.BadSignature:
        return not_found(request)
    version = (DeliveryLog.objects.filter(pk=delivery_id)
               .values_list("campaign_id", "campaign__updated_at").first())
    if version is None:
        return not_found(request)
    targets = click_tracking.links_for_version(
        *version, lambda: Campaign.objects.filter(pk=version[0]).values_list("html_body", flat=True).first())
    if index >= len(targets):
        return not_found(request)
    engagement.record_click(delivery_id, targets[index])
    return HttpResponseRedirect(targets[index])
