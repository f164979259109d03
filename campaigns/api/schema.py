"""The OpenAPI description's additions: every operation's error answers, all in the one error shape
(errors.py), so that a client (and Schemathesis) can rely on them."""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, e.g. invalid, illegal_transition, not_authenticated.")
    message = serializers.CharField(help_text="One sentence for people.")
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()),
                                   help_text="Field name → its messages (400 only).")


ERROR = ErrorSerializer
ERRORS = {
    400: "Bad input (field errors in errors), or a bad Idempotency-Key.",
    401: "No token, or one that is not valid, expired or revoked.",
    403: "Your permissions do not allow this.",
    404: "No such object.",
    405: "Method not allowed.",
    406: "Cannot answer in the Accept type asked for.",
    409: "The campaign's state does not allow it (the reason is in message), or the Idempotency-Key is in use.",
    415: "Unsupported request body type.",
    429: "Over the rate limit: try again after Retry-After seconds.",
}


class ApiAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        bodies = super()._get_response_bodies(direction)
        for code, description in ERRORS.items():
            if str(code) not in bodies:
                bodies[str(code)] = self._get_response_for_code(OpenApiResponse(ERROR, description=description),
                                                                str(code))
        return bodies
