"""Signed public links carried in emails: unsubscribe, the open pixel and click redirects.

Tokens are signed with django.core.signing, one salt per purpose, so they cannot be forged, guessed
from ids, or used for another purpose than the one they were made for. A click token signs the
delivery and the index of a link in its campaign's HTML: the redirect target is looked up in the
campaign, never taken from the request.
"""

import functools
import hashlib
import hmac

from django.conf import settings
from django.core import signing

UNSUBSCRIBE_SALT = "campaigns.unsubscribe"
OPEN_SALT = "campaigns.open"
CLICK_SALT = "campaigns.click"


@functools.lru_cache(maxsize=8)
def _derived_key(salt, secret):
    # What django.utils.crypto.salted_hmac derives for Signer(salt=SALT) on every call.
    return hashlib.sha256(f"{salt}signer{secret}".encode()).digest()


def _sign(salt, value: str) -> str:
    """Signer(salt=SALT).sign(VALUE), byte for byte, at a quarter of the cost: the SMTP path makes one
    per tracked link per message. Tokens carry no timestamp, so they stay short. Checked with Signer."""
    digest = hmac.new(_derived_key(salt, settings.SECRET_KEY), value.encode(), hashlib.sha256).digest()
    return f"{value}:{signing.b64_encode(digest).decode()}"


def _unsign(salt, token: str) -> str:
    return signing.Signer(salt=salt).unsign(token)


def unsubscribe_token(delivery_id):
    return signing.dumps(delivery_id, salt=UNSUBSCRIBE_SALT)


def unsubscribe_url(delivery_id):
    return f"{settings.SITE_URL}/u/{unsubscribe_token(delivery_id)}/"


def delivery_id_from_unsubscribe_token(token):
    """The delivery id a token was made for; raises signing.BadSignature for a forged token."""
    return _as_id(signing.loads(token, salt=UNSUBSCRIBE_SALT))


def open_url(delivery_id):
    return f"{settings.SITE_URL}/t/o/{_sign(OPEN_SALT, str(delivery_id))}/"


def delivery_id_from_open_token(token):
    return _as_id(_unsign(OPEN_SALT, token))


def click_url(delivery_id, link_index):
    return f"{settings.SITE_URL}/t/c/{_sign(CLICK_SALT, f'{delivery_id}.{link_index}')}/"


def click_from_token(token):
    """(delivery id, link index) a click token was made for; raises signing.BadSignature if forged."""
    delivery_id, _, index = _unsign(CLICK_SALT, token).partition(".")
    return _as_id(delivery_id), _as_id(index)


def _as_id(value):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise signing.BadSignature("not an id") from None
    if number < 0:
        raise signing.BadSignature("not an id")
    return number
