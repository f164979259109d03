"""SendGrid v3 mail/send: one request per batch, the body sent once with substitution keys and one
personalization per recipient carrying its substitutions, custom_args and unsubscribe headers.

Payloads conform to SendGrid's published OpenAPI description (contracts/sendgrid/tsg_mail_v3.yaml)
and to the official library: the campaign id travels in each personalization's ``custom_args`` (an
object there), never in the top-level ``custom_args``, which the description types as a string and
the library as an object.

Every answer has one outcome (docs/delivery-guarantees.md, "Provider answers"):

- 202: every message sent.
- 400 whose errors all name personalizations: RecipientsRejected (those fail, the rest go again).
- 400 about the request as a whole, 401, 403, 413, any other 4xx: ProviderRefused, a configuration
  error: fall back to SMTP, or pause the campaign with the reason.
- 429: RateLimited, with the wait its reset names.
- 503, or 500 with SendGrid's own error body (its API refused the request): TemporaryError.
- 502, 504, any other 5xx, a 500 without SendGrid's error body, a read timeout or a connection
  closed without an answer: every message `unknown`. A gateway answers these when it lost track of a
  request SendGrid may already have taken; retrying, or sending over SMTP, could mail everyone twice.
- A connection that could not be made: TemporaryError (nothing reached SendGrid).
"""

import http.client
import json
import logging
import re
import time
import urllib.error
import urllib.request
from email.utils import parseaddr, parsedate_to_datetime
from json.encoder import encode_basestring_ascii as _json_str  # C, as json.dumps uses it

from django.conf import settings
from python_http_client.client import Response
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from campaigns.exceptions import AuthenticationRefused, ClaimLost, ProviderRefused, RateLimited, RecipientsRejected, TemporaryError
from campaigns.security.logsafe import excerpt
from campaigns.sending import ratelimit
from campaigns.sending.providers.base import (
    DeliveryResult,
    Headers,
    ascii_domain,
    list_unsubscribe_headers,
    Outcome,
    Provider,
    ProviderResponse,
)

logger = logging.getLogger(__name__)

PERSONALIZATION_FIELD = re.compile(r"^personalizations\.(\d+)(?:\.|$)")
TRIMMED_PERSONALIZATIONS = 3
RETRYABLE_STATUSES = (503,)  # the service said it could not take the request now


class Ambiguous:
    """An answer that leaves open whether SendGrid took the request: every message becomes unknown."""

    def __init__(self, reason):
        self.reason = reason


def _address(value):
    name, email = parseaddr(value)
    return {"email": email, "name": name} if name else {"email": email}


def _recipient(message):
    context = message.context
    name = " ".join(part for part in (context.get("first_name"), context.get("last_name")) if part)
    # The description's "format: email" takes an internationalised domain only in its IDNA form.
    email = ascii_domain(message.email)
    return {"email": email, "name": name} if name else {"email": email}


def _without_empty(personalization):
    """Leave out empty objects, as the official library does (a campaign without merge tags has no
    substitutions)."""
    return {key: value for key, value in personalization.items() if value}


def payload_dict(batch):
    """The request body as an object: one personalization per recipient. The reference that BodyTemplate
    encodes byte for byte (the tests hold them to it), and what an error keeps (trimmed)."""
    subject, html, text = batch.compiled.sendgrid_templates()
    substitutions = batch.compiled.substitutions
    campaign_id = str(batch.campaign_id)
    personalizations = [
        _without_empty({
            "to": [_recipient(message)],
            "substitutions": substitutions(message.context),
            "custom_args": {"campaign_id": campaign_id, "delivery_id": str(message.delivery_id)},
            "headers": list_unsubscribe_headers(message.context.get("unsubscribe_url", "")),
        })
        for message in batch.messages
    ]
    return {"personalizations": personalizations, **_batch_fields(batch, subject, html, text)}


def _batch_fields(batch, subject, html, text):
    """Everything in the body but the personalizations: the same for every recipient of the batch."""
    # text/plain must come before text/html; an empty block is refused.
    content = [{"type": kind, "value": value}
               for kind, value in (("text/plain", text), ("text/html", html)) if value]
    fields = {
        "from": _address(batch.from_email),
        "subject": subject,
        "content": content,
        # The campaign's tracking switch (Batch.tracking is set when it is on) drives SendGrid's own.
        "tracking_settings": {
            "click_tracking": {"enable": batch.tracking is not None, "enable_text": False},
            "open_tracking": {"enable": batch.tracking is not None},
        },
    }
    if batch.reply_to:
        fields["reply_to"] = _address(batch.reply_to)
    if batch.categories:
        fields["categories"] = list(batch.categories)
    return fields


def _json_format(text):
    """TEXT (JSON) as a %-format's literal part."""
    return text.replace("%", "%%")


class BodyTemplate:
    """A batch's request body as a template: the parts every recipient shares (from, subject, content,
    tracking, categories; the substitution keys, the campaign id, the unsubscribe headers' names) are
    JSON-encoded once per batch, and each recipient's values are spliced in JSON-escaped by
    ``json.encoder.encode_basestring_ascii``, the C function ``json.dumps`` itself uses. The result is
    exactly ``json.dumps(payload_dict(batch)).encode()`` (ASCII, ``ensure_ascii``), without building a
    dict per recipient or walking it to encode it (tests/sending/providers/test_sendgrid_body.py)."""

    def __init__(self, batch):
        from django.conf import settings

        compiled = batch.compiled
        subject, html, text = compiled.sendgrid_templates()
        self._values = compiled.substitution_values
        keys = compiled.substitution_keys
        self._tail = json.dumps(_batch_fields(batch, subject, html, text))[1:]  # '"from": ...}' after the list
        # One %-format per recipient: to (email, then ', "name": ...' or ''), substitution values, delivery id,
        # List-Unsubscribe.
        head = '{"to": [{"email": %s%s}], '
        if keys:
            head += '"substitutions": {' + ", ".join(_json_format(_json_str(key)) + ": %s" for key in keys) + "}, "
        head += _json_format('"custom_args": {"campaign_id": ' + _json_str(str(batch.campaign_id))
                             + ', "delivery_id": ') + '"%s"}'
        self._head = head
        mailto = settings.UNSUBSCRIBE_MAILTO
        self._mailto = f", <mailto:{mailto}?subject=unsubscribe>" if mailto else ""
        self._with_url = _json_format(', "headers": {"List-Unsubscribe": ') + "%s" + _json_format(
            ', "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}}')
        # No unsubscribe URL (test sends outside a campaign): the mailto alone, or no headers at all.
        self._without_url = ', "headers": {"List-Unsubscribe": ' + _json_str(self._mailto[2:]) + "}}" if mailto else "}"

    def personalization(self, message):
        context = message.context
        first, last = context.get("first_name"), context.get("last_name")
        name = f"{first} {last}" if first and last else first or last or ""
        email = message.email
        if not email.isascii():
            email = ascii_domain(email)
        values = [_json_str(value) for value in self._values(context)]
        url = context.get("unsubscribe_url", "")
        text = self._head % (_json_str(email), ', "name": ' + _json_str(name) if name else "", *values,
                             message.delivery_id)
        if url:
            return text + self._with_url % _json_str(f"<{url}>{self._mailto}")
        return text + self._without_url

    def render(self, messages):
        """The request body for MESSAGES (bytes)."""
        personalization = self.personalization
        return ('{"personalizations": [' + ", ".join([personalization(m) for m in messages]) + "], "
                + self._tail).encode("ascii")


def trimmed(payload):
    """The payload as kept on an error: everything but most of the personalizations (a request body in
    bytes is decoded first)."""
    if isinstance(payload, bytes):
        try:
            payload = json.loads(payload)
        except ValueError:
            return excerpt(payload.decode("utf-8", "replace"))
    if not isinstance(payload, dict):
        return payload
    personalizations = payload.get("personalizations") or []
    return {**payload, "personalizations": personalizations[:TRIMMED_PERSONALIZATIONS],
            "personalizations_count": len(personalizations)}


def _error_messages(body):
    try:
        errors = json.loads(body or b"{}").get("errors") or []
    except (ValueError, AttributeError):
        # Not SendGrid's JSON (a proxy's page, anything): a short escaped excerpt, never the whole body.
        return [], excerpt(body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or ""))
    summary = "; ".join(f"{e.get('field') or 'request'}: {e.get('message')}" for e in errors if isinstance(e, dict))
    return errors, excerpt(summary, limit=500)


class SendGridProvider(Provider):
    name = "sendgrid"

    def __init__(self, api_key=None, host=None, timeout=None, name=None, rate=None, rate_key=None):
        self.api_key = settings.SENDGRID_API_KEY if api_key is None else api_key
        self.host = (host or settings.SENDGRID_API_HOST).rstrip("/")
        self.timeout = timeout or settings.SENDGRID_TIMEOUT_SECONDS
        self.name = name or self.name
        self.rate, self.rate_key = rate, rate_key  # None: SENDGRID_RATE_LIMIT_PER_SEC under "sendgrid"

    def is_configured(self):
        return bool(self.api_key)

    def build_payload(self, batch):
        """The request body, as bytes: exactly ``json.dumps(payload_dict(batch))``, built from a per-batch
        template (BodyTemplate) into which each recipient's values are spliced JSON-escaped."""
        return BodyTemplate(batch).render(batch.messages)

    def deliver(self, batch, payload):
        client = SendGridAPIClient(api_key=self.api_key, host=self.host)
        # One place per recipient under the shared limit, freed a window after this request's answer
        # (ratelimit.Pacer): SendGrid sees at most the rate in every second, however the requests of
        # every worker bunch up on the way.
        pacer = ratelimit.Pacer(self.rate_key or self.name, rate=self.rate, budget=batch.rate_wait)
        pacer.take(len(batch.messages))
        try:
            return self._post(client, batch, payload)
        finally:
            pacer.done()

    def _post(self, client, batch, payload):
        if len(self.call_begins(batch, batch.messages)) != len(batch.messages):
            raise ClaimLost("the batch's claim expired before the request was sent", provider=self.name)
        try:
            return _post_json(client, payload, self.timeout)
        except HTTPError as exc:
            return self._outcome_of_status(exc, payload)
        except urllib.error.URLError as exc:
            # urllib raises URLError while connecting or sending the request, before any reply could
            # exist: SendGrid cannot have accepted a body it did not receive, so retrying is safe.
            raise TemporaryError(f"SendGrid unreachable at {self.host}: {exc.reason}", provider=self.name,
                                 payload=trimmed(payload)) from exc
        except (OSError, http.client.HTTPException) as exc:
            # The request went out and no reply came back (read timeout, connection dropped): SendGrid
            # may have accepted it.
            return Ambiguous(f"SendGrid did not answer after the request was sent ({type(exc).__name__}: {exc})")

    def _outcome_of_status(self, exc, payload):
        """An error answer: the typed error to raise, or Ambiguous (see the module docstring)."""
        status = exc.status_code
        response = ProviderResponse(status=status, headers=Headers(exc.headers.items() if exc.headers else ()),
                                    body=exc.body)
        errors, summary = _error_messages(exc.body)
        kwargs = {"provider": self.name, "payload": trimmed(payload), "response": response}
        if status == 429:
            retry_after = _retry_after(response.headers)
            raise RateLimited(f"SendGrid rate limit (429), retry after {retry_after} s", retry_after=retry_after,
                              **kwargs)
        if status in RETRYABLE_STATUSES or (status == 500 and errors):
            raise TemporaryError(f"SendGrid {status}: {summary}", **kwargs)
        if status >= 500:
            return Ambiguous(f"SendGrid answered {status} ({summary or 'no SendGrid error body'}): a gateway "
                             f"answer that leaves open whether SendGrid took the request")
        if status == 400:
            reasons = self._rejected_personalizations(errors)
            if reasons:
                raise RecipientsRejected(f"SendGrid refused {len(reasons)} recipients (400): {summary}",
                                         reasons=reasons, **kwargs)
            raise ProviderRefused(f"SendGrid refused the request as a whole (400, a configuration error): {summary}",
                                  **kwargs)
        # 401/403 (bad key, missing permission), 413 (too large), anything else 4xx: a configuration
        # problem that no retry fixes, so the next provider should take over.
        if status in (401, 403):
            raise AuthenticationRefused(f"SendGrid {status}: {summary}", **kwargs)
        raise ProviderRefused(f"SendGrid {status}: {summary}", **kwargs)

    @staticmethod
    def _rejected_personalizations(errors):
        """{index in batch: reason} for errors whose `field` names a personalization.

        Empty when any error is about the request as a whole (e.g. from.email): that is a
        configuration error, not the recipients' fault."""
        reasons = {}
        for error in errors:
            match = PERSONALIZATION_FIELD.match(str(error.get("field") or ""))
            if not match:
                return {}
            index = int(match.group(1))
            reason = f"{error.get('field')}: {error.get('message')}"
            reasons[index] = f"{reasons[index]}; {reason}" if index in reasons else reason
        return reasons

    def parse_response(self, batch, payload, response):
        if isinstance(response, Ambiguous):
            logger.error("Campaign %s: %s: %d messages marked unknown, not re-sent automatically",
                         batch.campaign_id, response.reason, len(batch.messages))
            return [DeliveryResult(m.delivery_id, Outcome.UNKNOWN, error=response.reason) for m in batch.messages]
        message_id = response.headers.get("X-Message-Id", "") if response.headers else ""
        logger.info("Campaign %s: SendGrid accepted %d messages (%s, X-Message-Id %s)", batch.campaign_id,
                    len(batch.messages), response.status_code, message_id)
        return [DeliveryResult(m.delivery_id, Outcome.SENT, message_id=message_id) for m in batch.messages]


def _post_json(client, body, timeout):
    """POST BODY (JSON bytes) to mail/send with the official client's URL, headers and error types, as its
    ``client.mail.send.post(request_body=...)`` does, without its json.dumps of a dict and its formatting
    of the whole body for a debug log line."""
    send = client.client.mail.send
    headers = dict(send.request_headers)
    headers["Content-Type"] = "application/json"
    request = urllib.request.Request(send._build_url(None), data=body, headers=headers, method="POST")
    return Response(send._make_request(urllib.request.build_opener(), request, timeout=timeout))


def _retry_after(headers):
    """Seconds until X-RateLimit-Reset (epoch seconds), counted from the response's Date header so that
    the worker's clock does not matter; from the worker's clock only when there is no Date. None when
    the reset is missing or not a number."""
    try:
        reset = float(headers.get("X-RateLimit-Reset"))
    except (TypeError, ValueError):
        return None
    try:
        now = parsedate_to_datetime(headers.get("Date")).timestamp()
    except (TypeError, ValueError, IndexError):
        now = time.time()
    return max(0.0, reset - now)
