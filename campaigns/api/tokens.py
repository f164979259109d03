"""Personal API tokens: made, listed, revoked and checked here; the admin, `manage.py api_token` and the
API's authentication call these functions.

A token is `mlr_<prefix>_<secret>`; the row keeps the prefix (to find it) and the SHA-256 of the whole
token, never the token, so it is shown once, when it is made.
"""

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta

from django.utils import timezone

from campaigns.models import ApiToken

logger = logging.getLogger(__name__)

TOKEN_START = "mlr_"
# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(user, name="", expires_in_days=None):
    """A new token for USER; returns (row, token). The token is not stored: show it now."""
    if expires_in_days is not None and expires_in_days <= 0:
        raise ValueError("The expiry must be a positive number of days.")
    prefix = secrets.token_hex(6)
    token = f"{TOKEN_START}{prefix}_{secrets.token_urlsafe(32)}"
    expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
    row = ApiToken.objects.create(user=user, name=name[:100], prefix=prefix, token_hash=_digest(token),
                                  expires_at=expires_at)
    logger.info("API token %s (%s) created for user %s", row.pk, prefix, user.pk)
    return row, token


def revoke(token_id, user=None):
    """Revoke token TOKEN_ID (one of USER's when given); returns whether one was revoked now."""
    rows = ApiToken.objects.filter(pk=token_id, revoked_at__isnull=True)
    if user is not None:
        rows = rows.filter(user=user)
    revoked = bool(rows.update(revoked_at=timezone.now()))
    if revoked:
        logger.info("API token %s revoked", token_id)
    return revoked


def is_active(row, now=None):
    now = now or timezone.now()
    return row.revoked_at is None and (row.expires_at is None or row.expires_at > now)


def user_for(token):
    """(user, row) for a valid, unexpired, unrevoked TOKEN, or None. Records when it was last used."""
    if not token.startswith(TOKEN_START) or token.count("_") < 2:
        return None
    prefix = token[len(TOKEN_START):].split("_", 1)[0]
    row = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    if row is None or not hmac.compare_digest(row.token_hash, _digest(token)):
        return None
    now = timezone.now()
    if not is_active(row, now):
        return None
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return row.user, row
