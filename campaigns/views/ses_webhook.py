"""The endpoint Amazon SNS posts SES events to; verifying and applying them is
campaigns.engagement.ses_webhook."""

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from campaigns.engagement.ses_webhook import handle
from campaigns.exceptions import WebhookRefused


@csrf_exempt
@require_POST
def ses_webhook(request):
    try:
        return JsonResponse(handle(request.body))  # raw bytes: SNS signs the values inside exactly
    except WebhookRefused as refused:
        return JsonResponse({"error": str(refused)}, status=refused.status)
