"""The endpoint SendGrid posts its Event Webhook to; verifying and applying the events is
campaigns.engagement.sendgrid_webhook."""

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from campaigns.engagement.sendgrid_webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, apply_events, parse, verify
from campaigns.exceptions import WebhookRefused


@csrf_exempt
@require_POST
def sendgrid_webhook(request):
    body = request.body  # raw bytes: the signature covers them exactly
    try:
        verify(body, request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER))
        payload = parse(body)
    except WebhookRefused as refused:
        return JsonResponse({"error": str(refused)}, status=refused.status)
    return JsonResponse(apply_events(payload).as_dict())
