"""The open pixel and the click redirect in tracked emails (SMTP path; the links are written by
campaigns.click_tracking). Each records the recipient's first open or click, once per recipient."""

import base64

from django.core import signing
from django.db.models import F
from django.http import HttpResponse, HttpResponseRedirect
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from campaigns import click_tracking, signed_links
from campaigns.models import Campaign, DeliveryLog
from campaigns.views import not_found

# A transparent 1x1 GIF.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


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
        delivery_id = signed_links.delivery_id_from_open_token(token)
    except signing.BadSignature:
        return not_found(request)
    _record_first(delivery_id, "opened_at", "opened_count")
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
    _record_first(delivery_id, "clicked_at", "clicked_count")
    return HttpResponseRedirect(targets[index])
