"""SendGrid v3 mail/send: one request per batch, the body sent once with substitution keys and one
personalization per recipient carrying its substitutions, custom_args and unsubscribe headers."""

import http.client
import json
import logging
import re
import urllib.error
from email.utils import parseaddr

from django.conf import settings
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from campaigns.sending.providers.base import (
    ClaimLost,
    DeliveryResult,
    list_unsubscribe_headers,
    Outcome,
    Provider,
    ProviderResponse,
    ProviderUnavailable,
    RateLimited,
    RecipientsRejected,
    TemporaryError,
)

logger = logging.getLogger("campaigns.sending")

PERSONALIZATION_FIELD = re.compile(r"^personalizations\.(\d+)(?:\.|$)")
TRIMMED_PERSONALIZATIONS = 3


def _address(value):
    name, email = parseaddr(value)
    return {"email": email, "name": name} if name else {"email": email}


def _recipient(message):
    context = message.context
    name = " ".join(part for part in (context.get("first_name"), context.get("last_name")) if part)
    return {"email": message.email, "name": name} if name else {"email": message.email}


def trimmed(payload):
    """The payload as kept on an error: everything but most of the personalizations."""
    if not isinstance(payload, dict):
        return payload
    personalizations = payload.get("personalizations") or []
    return {**payload, "personalizations": personalizations[:TRIMMED_PERSONALIZATIONS],
            "personalizations_count": len(personalizations)}


def _error_messages(body):
    try:
        errors = json.loads(body or b"{}").get("errors") or []
    except (ValueError, AttributeError):
        return [], (body or b"")[:500].decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    summary = "; ".join(f"{e.get('field') or 'request'}: {e.get('message')}" for e in errors if isinstance(e, dict))
    return errors, summary


class SendGridProvider(Provider):
    name = "sendgrid"

    def __init__(self, api_key=None, host=None, timeout=None):
        self.api_key = settings.SENDGRID_API_KEY if api_key is None else api_key
        self.host = host or settings.SENDGRID_API_HOST
        self.timeout = timeout or settings.SENDGRID_TIMEOUT_SECONDS

    def is_configured(self):
        return bool(self.api_key)

    def build_payload(self, batch):
        subject, html, text = batch.compiled.sendgrid_templates()
        substitutions = batch.compiled.substitutions
        personalizations = [
            {
                "to": [_recipient(message)],
                "substitutions": substitutions(message.context),
                "custom_args": {"delivery_id": str(message.delivery_id)},
                "headers": list_unsubscribe_headers(message.context.get("unsubscribe_url", "")),
            }
            for message in batch.messages
        ]
        # text/plain must come before text/html; an empty block is refused.
        content = [{"type": kind, "value": value}
                   for kind, value in (("text/plain", text), ("text/html", html)) if value]
        payload = {
            "personalizations": personalizations,
            "from": _address(batch.from_email),
            "subject": subject,
            "content": content,
            "custom_args": {"campaign_id": str(batch.campaign_id)},
            # The campaign's tracking switch (Batch.tracking is set when it is on) drives SendGrid's own.
            "tracking_settings": {
                "click_tracking": {"enable": batch.tracking is not None, "enable_text": False},
                "open_tracking": {"enable": batch.tracking is not None},
            },
        }
        if batch.reply_to:
            payload["reply_to"] = _address(batch.reply_to)
        if batch.categories:
            payload["categories"] = list(batch.categories)
        return payload

    def deliver(self, batch, payload):
        client = SendGridAPIClient(api_key=self.api_key, host=self.host)
        self.pace(len(batch.messages))
        if len(self.call_begins(batch, batch.messages)) != len(batch.messages):
            raise ClaimLost("the batch's claim expired before the request was sent", provider=self.name)
        try:
            return client.client.mail.send.post(request_body=payload, timeout=self.timeout)
        except HTTPError as exc:
            raise self._error_for_status(exc, payload) from None
        except urllib.error.URLError as exc:
            # urllib raises URLError while connecting or sending the request, before any reply could
            # exist: SendGrid cannot have accepted a body it did not receive, so retrying is safe.
            raise TemporaryError(f"SendGrid unreachable at {self.host}: {exc.reason}", provider=self.name,
                                 payload=trimmed(payload)) from exc
        except (OSError, http.client.HTTPException) as exc:
            # The request went out and no reply came back (read timeout, connection dropped): SendGrid
            # may have accepted it. Every message becomes UNKNOWN and is never re-sent automatically
            # (promise 3), rather than risk mailing everyone twice.
            return exc

    def _error_for_status(self, exc, payload):
        status = exc.status_code
        headers = dict(exc.headers.items()) if exc.headers else {}
        response = ProviderResponse(status=status, headers=headers, body=exc.body)
        errors, summary = _error_messages(exc.body)
        kwargs = {"provider": self.name, "payload": trimmed(payload), "response": response}
        if status == 429:
            reset = headers.get("X-RateLimit-Reset")
            reset_at = float(reset) if reset and reset.replace(".", "", 1).isdigit() else None
            return RateLimited(f"SendGrid rate limit (429), resets at {reset}", reset_at=reset_at, **kwargs)
        if status >= 500:
            return TemporaryError(f"SendGrid {status}: {summary}", **kwargs)
        if status == 400:
            return RecipientsRejected(f"SendGrid refused the request (400): {summary}",
                                      reasons=self._rejected_personalizations(errors), **kwargs)
        # 401/403 (bad key, missing permission) and anything else 4xx: a configuration problem that no
        # retry fixes, so the next provider should take over.
        return ProviderUnavailable(f"SendGrid {status}: {summary}", **kwargs)

    @staticmethod
    def _rejected_personalizations(errors):
        """{index in batch: reason} for errors whose `field` names a personalization.

        Empty when any error is about the request as a whole (e.g. from.email): then every
        message is concerned."""
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
        if isinstance(response, Exception):
            error = f"SendGrid did not answer after the request was sent ({type(response).__name__}: {response})"
            logger.error("Campaign %s: %s: %d messages marked unknown, not re-sent automatically",
                         batch.campaign_id, error, len(batch.messages))
            return [DeliveryResult(m.delivery_id, Outcome.UNKNOWN, error=error) for m in batch.messages]
        message_id = response.headers.get("X-Message-Id", "") if response.headers else ""
        logger.info("Campaign %s: SendGrid accepted %d messages (%s, X-Message-Id %s)", batch.campaign_id,
                    len(batch.messages), response.status_code, message_id)
        return [DeliveryResult(m.delivery_id, Outcome.SENT, message_id=message_id) for m in batch.messages]
