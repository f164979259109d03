"""The open pixel and the click redirect in tracked emails (SMTP path; the links are written by
campaigns.message.click_tracking). Each records the recipient's first open (a person's or a machine's) or
click, and the first click on each link, through campaigns.engagement.opens_and_clicks."""

import base64

from django.core import signing
from django.http import HttpResponse, HttpResponseRedirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from campaigns.engagement import opens_and_clicks
from campaigns.experiments import ab_tests
from campaigns.message import click_tracking, signed_links
from campaigns.models import DeliveryLog
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
    opens_and_clicks.record_open(delivery_id, request.headers.get("User-Agent"))
    return HttpResponse(PIXEL_GIF, content_type="image/gif")


@never_cache
@require_GET
def click(request, token, index=None):
    try:
        delivery_id, index = signed_links.click_from_token(token, index)
    except signing.BadSignature:
        return not_found(request)
    version = (DeliveryLog.objects.filter(pk=delivery_id)
               .values_list("campaign_id", "campaign__updated_at", "variant_id", "campaign__ab_winner_id").first())
    if version is None:
        return not_found(request)
    campaign_id, updated_at, variant_id, winner_id = version
    variant_id = variant_id or winner_id  # an A/B test's rest got the winner
    targets = click_tracking.links_for_version(
        campaign_id, (updated_at, variant_id), lambda: ab_tests.html_body_sent(campaign_id, variant_id))
    if index >= len(targets):
        return not_found(request)
    opens_and_clicks.record_click(delivery_id, targets[index])
    return HttpResponseRedirect(targets[index])
