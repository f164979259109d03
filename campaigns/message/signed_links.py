"""Signed public links carried in emails: unsubscribe, the open pixel, click redirects, the web version.

One token per recipient serves all its links, from one AES block and one HMAC (issue 14, item 5):

    handle = AES-256(k_enc, delivery id as 8 bytes + 8 zero bytes)      16 bytes, opaque
    tags   = HMAC-SHA256(k_mac, handle)                                    32 bytes
    unsubscribe token = b64url(handle + tags[0:12])      /u/<token>/                        38 characters
    tracking token    = b64url(handle + tags[12:24])     /t/o/<token>/, /t/c/<token>/<i>/   38 characters
    web version token = b64url(handle + tags[24:32])     /w/<token>/                        32 characters

The web version's tag is the HMAC's last 8 bytes (issue 16, item 7): the same hash, so the first two
tokens are unchanged; 64 bits is enough for a page that only shows the message (forging one needs
about 2^63 requests), and its own purpose keeps a tracking or unsubscribe token from opening it.

The handle hides the delivery id (sequential) from anyone without the key: a PRP of a unique block.
The two tags keep purposes apart: a tracking token (fetched by image proxies, link scanners) cannot
unsubscribe. A click names a link by its index in the campaign's own HTML: the redirect target is
looked up in the campaign, never taken from the request, so the index needs no signature of its own.

Keys: k_enc and k_mac are derived from settings.LINK_SIGNING_KEY. A token made with any key in
LINK_SIGNING_KEY_FALLBACKS is still accepted, so rotating the key does not break links already
mailed (RFC 8058 one-click unsubscribe must keep working). Tokens carry no timestamp.

Links mailed before this scheme ("<value>:<signature>", django.core.signing with SECRET_KEY and one
salt per purpose) are still accepted for as long as SECRET_KEY or SECRET_KEY_FALLBACKS holds their key.
"""

import base64
import binascii
import functools
import hashlib
import hmac
import threading

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from django.conf import settings
from django.core import signing

UNSUBSCRIBE_SALT = "campaigns.unsubscribe"  # legacy tokens only
OPEN_SALT = "campaigns.open"
CLICK_SALT = "campaigns.click"

_TAG = 12
_ZERO = bytes(8)


@functools.lru_cache(maxsize=16)
def _keys(key: str):
    """(AES-256 cipher, keyed HMAC to .copy()) derived from one LINK_SIGNING_KEY value."""
    raw = key.encode()
    # The labels name this module's former path, campaigns.links: changing them would break every link mailed.
    enc = hmac.new(raw, b"campaigns.links.encrypt", hashlib.sha256).digest()
    mac = hmac.new(raw, b"campaigns.links.mac", hashlib.sha256).digest()
    return Cipher(algorithms.AES(enc), modes.ECB()), hmac.new(mac, digestmod=hashlib.sha256)


_contexts = threading.local()


def _aes(key: str, decrypt=False):
    """This thread's ECB context for KEY, reused: an ECB update of whole blocks keeps no state between
    calls, and making a context costs ~10x one block."""
    cache = _contexts.__dict__.setdefault("by_key", {})
    context = cache.get((key, decrypt))
    if context is None:
        if len(cache) > 32:
            cache.clear()
        cipher = _keys(key)[0]
        context = cache[(key, decrypt)] = cipher.decryptor() if decrypt else cipher.encryptor()
    return context


def _tags(key: str, handle: bytes) -> bytes:
    mac = _keys(key)[1].copy()
    mac.update(handle)
    return mac.digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@functools.lru_cache(maxsize=4096)
def _recipient_tokens(delivery_id: int, key: str) -> tuple[str, str, str]:
    # Cached: the sending path asks for the unsubscribe and web links (build_batch) and for the
    # tracking links (the SMTP provider) of the same recipient; the keyed work is done once for all.
    handle = _aes(key).update(delivery_id.to_bytes(8, "big") + _ZERO)
    tags = _tags(key, handle)
    return _b64(handle + tags[:_TAG]), _b64(handle + tags[_TAG:2 * _TAG]), _b64(handle + tags[2 * _TAG:])


def _all_tokens(delivery_id):
    if not isinstance(delivery_id, int) or not 0 <= delivery_id < 2 ** 63:
        raise ValueError(f"not a delivery id: {delivery_id!r}")
    return _recipient_tokens(delivery_id, settings.LINK_SIGNING_KEY)


def recipient_tokens(delivery_id) -> tuple[str, str]:
    """(unsubscribe token, tracking token) of one delivery, from one AES block and one HMAC."""
    return _all_tokens(delivery_id)[:2]


# Each purpose's slice of the HMAC, and the length of its token in characters.
_PURPOSES = {0: (slice(0, _TAG), 38), 1: (slice(_TAG, 2 * _TAG), 38), 2: (slice(2 * _TAG, 32), 32)}


def _verify(token: str, purpose: int) -> int:
    """The delivery id of a token for PURPOSE (0 unsubscribe, 1 tracking, 2 web version); BadSignature otherwise."""
    tag_slice, length = _PURPOSES[purpose]
    if not isinstance(token, str) or len(token) != length:
        raise signing.BadSignature("not a link token")
    try:
        raw = base64.urlsafe_b64decode(token + "==")
    except (binascii.Error, ValueError):
        raise signing.BadSignature("not a link token") from None
    if len(raw) != 16 + tag_slice.stop - tag_slice.start or _b64(raw) != token:
        raise signing.BadSignature("not a link token")
    handle, tag = raw[:16], raw[16:]
    for key in (settings.LINK_SIGNING_KEY, *settings.LINK_SIGNING_KEY_FALLBACKS):
        expected = _tags(key, handle)[tag_slice]
        if hmac.compare_digest(expected, tag):
            block = _aes(key, decrypt=True).update(handle)
            if block[8:] == _ZERO:
                return _as_id(int.from_bytes(block[:8], "big"))
    raise signing.BadSignature("link token not signed with a current or fallback LINK_SIGNING_KEY")


def _is_legacy(token) -> bool:
    return isinstance(token, str) and ":" in token


def unsubscribe_token(delivery_id):
    return recipient_tokens(delivery_id)[0]


def tracking_token(delivery_id):
    return recipient_tokens(delivery_id)[1]


def unsubscribe_url(delivery_id):
    return f"{settings.SITE_URL}/u/{unsubscribe_token(delivery_id)}/"


def delivery_id_from_unsubscribe_token(token):
    """The delivery id a token was made for; raises signing.BadSignature for a forged token."""
    if _is_legacy(token):
        return _as_id(signing.loads(token, salt=UNSUBSCRIBE_SALT))
    return _verify(token, 0)


def web_token(delivery_id):
    return _all_tokens(delivery_id)[2]


def web_url(delivery_id):
    """The recipient's web version of the message ({{ web_url }}): a public page, signed."""
    return f"{settings.SITE_URL}/w/{web_token(delivery_id)}/"


def delivery_id_from_web_token(token):
    """The delivery id of a web version link; raises signing.BadSignature for a forged or other token."""
    return _verify(token, 2)


def open_url(delivery_id):
    return f"{settings.SITE_URL}/t/o/{tracking_token(delivery_id)}/"


def delivery_id_from_open_token(token):
    if _is_legacy(token):
        return _as_id(signing.Signer(salt=OPEN_SALT).unsign(token))
    return _verify(token, 1)


def click_url(delivery_id, link_index):
    return f"{settings.SITE_URL}/t/c/{tracking_token(delivery_id)}/{int(link_index)}/"


def click_from_token(token, link_index=None):
    """(delivery id, link index) of a click link; raises signing.BadSignature if forged.

    New links: /t/c/<tracking token>/<index>/. Legacy links: /t/c/<signed "id.index">/.
    """
    if link_index is None:
        if not _is_legacy(token):
            raise signing.BadSignature("no link index")
        delivery_id, _, index = signing.Signer(salt=CLICK_SALT).unsign(token).partition(".")
        return _as_id(delivery_id), _as_id(index)
    if _is_legacy(token):
        raise signing.BadSignature("a legacy click token carries its own index")
    return _verify(token, 1), _as_id(link_index)


# --- bounce tokens -----------------------------------------------------------------------------------
# The token a bounce brings back (campaigns.engagement.bounce_mail): in the VERP envelope sender
# bounces+<token>@<bounce domain> and in the X-Mailer-Delivery header. The same opaque handle, with its
# own 10-byte tag (HMAC of a purpose label and the handle), in lower-case base32: mail servers may change
# the case of a local part, and 42 characters keep the local part within RFC 5321's 64.
_BOUNCE_LABEL = b"bounce"
_BOUNCE_TAG = 10
BOUNCE_TOKEN_LENGTH = 42


def _bounce_tag(key: str, handle: bytes) -> bytes:
    mac = _keys(key)[1].copy()
    mac.update(_BOUNCE_LABEL + handle)
    return mac.digest()[:_BOUNCE_TAG]


@functools.lru_cache(maxsize=4096)
def _bounce_token(delivery_id: int, key: str) -> str:
    handle = _aes(key).update(delivery_id.to_bytes(8, "big") + _ZERO)
    return base64.b32encode(handle + _bounce_tag(key, handle)).decode().rstrip("=").lower()


def bounce_token(delivery_id) -> str:
    """The token naming one delivery in its bounces; 42 characters of [a-z2-7]."""
    if not isinstance(delivery_id, int) or not 0 <= delivery_id < 2 ** 63:
        raise ValueError(f"not a delivery id: {delivery_id!r}")
    return _bounce_token(delivery_id, settings.LINK_SIGNING_KEY)


def delivery_id_from_bounce_token(token) -> int:
    """The delivery id of a bounce token (any case); raises signing.BadSignature for a forged or other token."""
    if not isinstance(token, str) or len(token) != BOUNCE_TOKEN_LENGTH:
        raise signing.BadSignature("not a bounce token")
    try:
        raw = base64.b32decode(token.upper() + "=" * 6)
    except (binascii.Error, ValueError):
        raise signing.BadSignature("not a bounce token") from None
    handle, tag = raw[:16], raw[16:]
    for key in (settings.LINK_SIGNING_KEY, *settings.LINK_SIGNING_KEY_FALLBACKS):
        if hmac.compare_digest(_bounce_tag(key, handle), tag):
            block = _aes(key, decrypt=True).update(handle)
            if block[8:] == _ZERO:
                return _as_id(int.from_bytes(block[:8], "big"))
    raise signing.BadSignature("bounce token not signed with a current or fallback LINK_SIGNING_KEY")


def _as_id(value):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise signing.BadSignature("not an id") from None
    if number < 0:
        raise signing.BadSignature("not an id")
    return number
