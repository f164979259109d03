"""One error shape for every API answer: {"code": ..., "message": ..., "errors": {field: [messages]}}.

A refusal from the domain is 409 (IllegalTransition, CampaignError: the campaign's state does not allow
it, with the reason); bad input is 400 (a serializer's errors, a Django ValidationError, a bad segment,
merge tag or file). Anything else DRF knows (401, 403, 404, 405, 415, 429) keeps its status.
"""

import logging

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler

from campaigns.exceptions import CampaignError, IllegalTransition, ImportRefused, MergeTagError, SegmentError

logger = logging.getLogger(__name__)


def body(code, message, errors=None):
    return {"code": code, "message": message, "errors": errors or {}}


def _field_errors(detail):
    if isinstance(detail, dict):
        return {field: [str(m) for m in (messages if isinstance(messages, list) else [messages])]
                for field, messages in detail.items()}
    if isinstance(detail, list):
        return {"non_field_errors": [str(m) for m in detail]}
    return {}


def _domain_refusal(exc):
    """(status, code) of an exception the domain raises, or None."""
    if isinstance(exc, (SegmentError, MergeTagError, ImportRefused)):
        return status.HTTP_400_BAD_REQUEST, "invalid"
    if isinstance(exc, IllegalTransition):
        return status.HTTP_409_CONFLICT, "illegal_transition"
    if isinstance(exc, CampaignError):
        return status.HTTP_409_CONFLICT, "conflict"
    return None


def handle(exc, context):
    request = context.get("request")
    if request is not None:  # an error is JSON whatever was asked for (text/csv included)
        request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    refusal = _domain_refusal(exc)
    if refusal:
        return Response(body(refusal[1], str(exc)), status=refusal[0])
    if isinstance(exc, DjangoValidationError):
        errors = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        return Response(body("invalid", " ".join(exc.messages), errors), status=status.HTTP_400_BAD_REQUEST)
    response = exception_handler(exc, context)
    if response is None:
        return None  # a server error: Django's handler logs it and answers 500
    if isinstance(exc, exceptions.ValidationError):
        response.data = body("invalid", "The request is not valid: see errors.", _field_errors(exc.detail))
    else:
        detail = getattr(exc, "detail", str(exc))
        code = detail.code if hasattr(detail, "code") else getattr(exc, "default_code", "error")
        response.data = body(str(code), str(detail))
    return response


@csrf_exempt  # a POST to no endpoint is a 404 like any other, not the CSRF failure page
def not_found(request, *args, **kwargs):
    """Any /api/ URL that names nothing: JSON like every other answer."""
    return JsonResponse(body("not_found", "No API endpoint at this address."), status=404)
