"""`Idempotency-Key` on every POST: a repeat by the same user, to the same method and path, within
IDEMPOTENCY_KEY_HOURS (24), answers the first answer again and does nothing again.

The key's row is inserted before the request acts, under a unique constraint, in its own transaction:
of two concurrent duplicates one inserts and acts, the other meets the row and is told the first is still
running (409) or, once it has finished, gets its answer. An answer of 5xx (or a crash) removes the row, so
the request may be sent again.
"""

from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status
from rest_framework.response import Response

from campaigns.api.errors import body
from campaigns.models import IdempotencyKey

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


class Replay(Exception):
    def __init__(self, response):
        self.response = response


def _refusal(code, message, status_code):
    return Replay(Response(body(code, message), status=status_code))


def claim(request):
    """Before a POST acts: the key's new row, or None without a key; raises Replay to answer at once."""
    key = request.headers.get(HEADER)
    if request.method != "POST" or key is None:
        return None
    if not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise _refusal("invalid", f"The {HEADER} header must be 1 to {MAX_KEY_LENGTH} characters.",
                       status.HTTP_400_BAD_REQUEST)
    identity = {"user": request.user, "key": key, "method": request.method, "path": request.path}
    expired_before = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)
    for _ in range(2):
        try:
            with transaction.atomic():
                return IdempotencyKey.objects.create(**identity)
        except IntegrityError:
            first = IdempotencyKey.objects.filter(**identity).first()
            if first is None:
                continue  # removed in the meantime (its request failed): claim it now
            if first.created_at < expired_before:
                IdempotencyKey.objects.filter(pk=first.pk, created_at__lt=expired_before).delete()
                continue
            if first.status_code is None:
                raise _refusal("idempotency_key_in_use", f"A request with this {HEADER} is still being handled; "
                               "repeat it later to get its answer.", status.HTTP_409_CONFLICT)
            replayed = Response(first.body, status=first.status_code)
            replayed["Idempotent-Replayed"] = "true"
            raise Replay(replayed)
    raise _refusal("idempotency_key_in_use", f"This {HEADER} is in use.", status.HTTP_409_CONFLICT)


def record(row, response):
    """After the request: keep its answer, or free the key when the server failed."""
    if row is None:
        return
    if response is None or response.status_code >= 500 or not isinstance(getattr(response, "data", None),
                                                                          (dict, list, type(None))):
        IdempotencyKey.objects.filter(pk=row.pk).delete()
        return
    IdempotencyKey.objects.filter(pk=row.pk).update(status_code=response.status_code, body=response.data)


def remove_expired():
    """Rows older than the window (run hourly by beat with the other clean-ups)."""
    before = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)
    return IdempotencyKey.objects.filter(created_at__lt=before).delete()[0]
