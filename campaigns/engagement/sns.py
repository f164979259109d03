"""Amazon SNS messages posted to an HTTPS endpoint: signature verification and subscription confirmation.

As AWS documents it ("Verifying the signatures of Amazon SNS messages",
https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html, and the JSON formats of
notifications and subscription confirmations): the string to sign is "Key\\nValue\\n" for each signed
key of the message's Type, in byte order, a key absent from the message left out; SignatureVersion 1
signs it with SHA1withRSA, 2 with SHA256withRSA, with the certificate at SigningCertURL, which must be
an https URL on exactly an Amazon SNS host, sns.<region>.amazonaws.com with a real region label (so
no S3 bucket host such as sns.s3.amazonaws.com), with no query string and no fragment (each would be a
fresh outbound fetch). Certificates are fetched over verified TLS, must name SNS as their subject
(CN=sns.amazonaws.com), and are kept in a small in-process cache (AWS changes the URL when it
changes the certificate). Hand-written on `cryptography`: boto3 has no SNS verifier, and the PyPI packages that
do this are unmaintained or bring the whole AWS SDK.

A signature proves only that *some* SNS topic sent the message, so the TopicArn must also be one of
SES_SNS_TOPIC_ARNS (anyone can create a topic and subscribe this endpoint to it). Every refusal of an
authentication check answers the same words (REFUSED), whatever the topic, so the answers do not tell
which topics are ours; the log says which check refused. A message older
than MAX_AGE_SECONDS is refused: SNS retries an HTTPS delivery for at most an hour, and the ids of
the messages inside that window de-duplicate (campaigns.engagement.provider_events).

SES_SNS_TRUSTED_CERTIFICATES adds certificates (PEM text or file paths) whose signatures are
accepted too, for tests that sign their own messages; every other check still applies.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import re
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from django.conf import settings

from campaigns.exceptions import WebhookRefused

logger = logging.getLogger(__name__)

# The keys each Type signs, in byte order (Subject only when present).
SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
OPTIONAL_KEYS = {"Subject"}
SIGNATURE_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
# sns.<region>.amazonaws.com: a region label such as us-east-1, us-gov-west-1 or (with .cn) cn-north-1.
SNS_HOST = re.compile(r"sns\.[a-z]{2}(-gov)?-[a-z]+-\d\.amazonaws\.com(\.cn)?")
SNS_CERTIFICATE_SUBJECT = "sns.amazonaws.com"
REFUSED = "not a verified Amazon SNS message for this endpoint"
CERTIFICATE_PATH = re.compile(r"/SimpleNotificationService-[A-Za-z0-9]+\.pem")
# SNS retries an HTTPS delivery for at most 3,600 s (a hard limit), plus time for the last attempt.
MAX_AGE_SECONDS = 3600 + 300
MAX_FUTURE_SECONDS = 300
MAX_BODY_BYTES = 512 * 1024  # an SNS message is at most 256 KB
MAX_DOWNLOAD_BYTES = 64 * 1024
FETCH_TIMEOUT_SECONDS = 10


# --- HTTP -------------------------------------------------------------------------------------------

class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect could lead anywhere: only the checked URL itself is fetched


_opener = urllib.request.build_opener(_NoRedirects)


def http_get(url: str) -> bytes:
    """The body of a 200 answer to GET URL (verified TLS, no redirects), or OSError."""
    try:
        with _opener.open(urllib.request.Request(url, method="GET"), timeout=FETCH_TIMEOUT_SECONDS) as response:
            if response.status != 200:
                raise OSError(f"HTTP {response.status}")
            body = response.read(MAX_DOWNLOAD_BYTES + 1)
    except urllib.error.HTTPError as error:
        raise OSError(f"HTTP {error.code}") from None
    except (urllib.error.URLError, ValueError) as error:
        raise OSError(str(getattr(error, "reason", error))) from None
    if len(body) > MAX_DOWNLOAD_BYTES:
        raise OSError("answer too large")
    return body


def is_sns_url(url, path: re.Pattern, query_allowed=False) -> bool:
    """Whether URL is https on an Amazon SNS host, default port, no credentials, its path matching PATH, no
    fragment, and no query string unless QUERY_ALLOWED."""
    if "#" in url or ("?" in url and not query_allowed):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (parts.scheme == "https" and port in (None, 443) and not parts.username and not parts.password
            and bool(parts.hostname) and SNS_HOST.fullmatch(parts.hostname) is not None
            and path.fullmatch(parts.path) is not None)


# --- certificates -----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=16)
def _fetched_certificate(url):
    """The certificate at URL (a checked SNS URL), if its subject is SNS's; failures are not cached."""
    certificate = x509.load_pem_x509_certificate(http_get(url))
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [name.value for name in names] != [SNS_CERTIFICATE_SUBJECT]:
        raise ValueError("the certificate's subject is not Amazon SNS")
    return certificate


@functools.lru_cache(maxsize=4)
def _trusted_certificates(entries: tuple) -> tuple:
    certificates = []
    for entry in entries:
        pem = entry if entry.lstrip().startswith("-----BEGIN") else Path(entry).read_text()
        certificates.append(x509.load_pem_x509_certificate(pem.encode("ascii")))
    return tuple(certificates)


def _fetched(url):
    try:
        return _fetched_certificate(url)
    except OSError as error:
        logger.warning("SNS signing certificate %s could not be fetched: %s", url, error)
        raise WebhookRefused("the signing certificate could not be fetched; try again", status=503) from None
    except ValueError as error:
        logger.warning("SNS signing certificate %s refused: %s", url, error)
        raise WebhookRefused("the signing certificate is not Amazon SNS's") from None


def _signed_by(certificate, signature, data, hash_algorithm, now):
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        return False
    try:
        key.verify(signature, data, padding.PKCS1v15(), hash_algorithm())
    except InvalidSignature:
        return False
    return True


# --- messages ---------------------------------------------------------------------------------------

def parse(body: bytes) -> dict:
    """The SNS message in BODY (a JSON object of strings), or WebhookRefused."""
    if len(body) > MAX_BODY_BYTES:
        raise WebhookRefused("message too large", status=400)
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):  # also UnicodeDecodeError
        raise WebhookRefused("body is not JSON", status=400) from None
    if not isinstance(message, dict):
        raise WebhookRefused("body is not an SNS message", status=400)
    return message


def signed_string(message: dict) -> str:
    """What SNS signed: "Key\\nValue\\n" for each signed key of the message's Type that it holds."""
    return "".join(f"{key}\n{message[key]}\n" for key in SIGNED_KEYS[message["Type"]] if key in message)


def _timestamp(text):
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=moment.tzinfo or timezone.utc)


def verify(message: dict, now: float | None = None) -> None:
    """Raise WebhookRefused unless MESSAGE was signed by Amazon SNS for one of our topics, recently.

    A refusal by an authentication check (403) says REFUSED whatever the reason; the reason is logged."""
    try:
        _verify(message, now)
    except WebhookRefused as refusal:
        if refusal.status != 403:
            raise
        logger.warning("SNS message refused: %s", refusal)
        raise WebhookRefused(REFUSED) from None


def _verify(message, now):
    topics = settings.SES_SNS_TOPIC_ARNS
    if not topics:
        raise WebhookRefused("no SNS topic is configured (SES_SNS_TOPIC_ARNS)")
    kind = message.get("Type")
    if kind not in SIGNED_KEYS:
        raise WebhookRefused("not an SNS message type this endpoint takes", status=400)
    signature, version, certificate_url = (message.get(key) for key in
                                           ("Signature", "SignatureVersion", "SigningCertURL"))
    if not signature or not version or not certificate_url:
        raise WebhookRefused("unsigned message")
    if not all(isinstance(message.get(key), str) for key in SIGNED_KEYS[kind] if key not in OPTIONAL_KEYS) \
            or not all(isinstance(value, str) for value in (signature, version, certificate_url)) \
            or not isinstance(message.get("Subject", ""), str):
        raise WebhookRefused("malformed SNS message", status=400)
    if version not in SIGNATURE_HASHES:
        raise WebhookRefused("unsupported SignatureVersion")
    if not is_sns_url(certificate_url, CERTIFICATE_PATH):
        raise WebhookRefused("the signing certificate URL is not an https URL on an Amazon SNS host")
    sent_at = _timestamp(message["Timestamp"])
    if sent_at is None:
        raise WebhookRefused("malformed timestamp", status=400)
    now = time.time() if now is None else now
    age = now - sent_at.timestamp()
    if age > MAX_AGE_SECONDS:
        raise WebhookRefused("stale timestamp")
    if age < -MAX_FUTURE_SECONDS:
        raise WebhookRefused("timestamp in the future")
    if message["TopicArn"] not in topics:
        raise WebhookRefused("not one of our SNS topics (SES_SNS_TOPIC_ARNS)")
    try:
        signature_bytes = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRefused("bad signature") from None

    data = signed_string(message).encode("utf-8")
    algorithm = SIGNATURE_HASHES[version]
    moment = datetime.fromtimestamp(now, timezone.utc)
    try:
        trusted = _trusted_certificates(tuple(settings.SES_SNS_TRUSTED_CERTIFICATES))
    except (OSError, ValueError):
        logger.error("SES_SNS_TRUSTED_CERTIFICATES holds something that is not a readable PEM certificate")
        raise WebhookRefused("a trusted certificate is invalid (SES_SNS_TRUSTED_CERTIFICATES)") from None
    for certificate in trusted:
        if _signed_by(certificate, signature_bytes, data, algorithm, moment):
            return
    if not _signed_by(_fetched(certificate_url), signature_bytes, data, algorithm, moment):
        raise WebhookRefused("bad signature")


def confirm_subscription(message: dict) -> None:
    """Visit a verified SubscriptionConfirmation's SubscribeURL, when it is SNS's ConfirmSubscription
    for the message's own topic; WebhookRefused otherwise or when SNS does not answer 200."""
    url = message.get("SubscribeURL")
    query = parse_qs(urlsplit(url).query) if isinstance(url, str) else {}
    if not isinstance(url, str) or not is_sns_url(url, re.compile(r"/?"), query_allowed=True) \
            or query.get("Action") != ["ConfirmSubscription"] \
            or query.get("TopicArn") != [message["TopicArn"]]:
        raise WebhookRefused("the SubscribeURL is not Amazon SNS's confirmation for this topic", status=400)
    try:
        http_get(url)
    except OSError as error:
        logger.warning("SNS subscription to %s could not be confirmed: %s", message["TopicArn"], error)
        raise WebhookRefused("the subscription could not be confirmed; try again", status=502) from None
    logger.info("SNS subscription to %s confirmed", message["TopicArn"])
