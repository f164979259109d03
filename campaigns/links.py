"""Signed public links carried in emails: unsubscribe (and, later, tracking).

Tokens are signed with django.core.signing, so they cannot be forged or guessed from ids.
"""

from django.conf import settings
from django.core import signing

UNSUBSCRIBE_SALT = "campaigns.unsubscribe"


def unsubscribe_token(delivery_id):
    return signing.dumps(delivery_id, salt=UNSUBSCRIBE_SALT)


def unsubscribe_url(delivery_id):
    return f"{settings.SITE_URL}/u/{unsubscribe_token(delivery_id)}/"


def delivery_id_from_unsubscribe_token(token):
    """The delivery id a token was made for; raises signing.BadSignature for a forged token."""
    return signing.loads(token, salt=UNSUBSCRIBE_SALT)
