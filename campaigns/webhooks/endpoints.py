"""Registering webhook endpoints: the URL is checked (safety.py), the events must be known, and the
secret is made here and shown once (the API's answer to the create, the admin's message)."""

import logging

from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns.models import WebhookEndpoint, WebhookMessage
from campaigns.webhooks import events, safety, signing

logger = logging.getLogger(__name__)


def clean(url, event_types):
    errors = {}
    try:
        safety.check_url(url)
    except safety.UnsafeUrl as error:
        errors["url"] = [str(error)]
    unknown = sorted(set(event_types) - set(events.EVENT_TYPES))
    if unknown or not event_types:
        errors["events"] = [f"Choose among: {', '.join(events.EVENT_TYPES)}" + (f" (not {', '.join(unknown)})."
                                                                               if unknown else ".")]
    if errors:
        raise ValidationError(errors)


def create(user, url, event_types, description="", enabled=True):
    """A new endpoint; returns (row, secret). The secret is stored encrypted and shown only now."""
    clean(url, event_types)
    secret = signing.new_secret()
    endpoint = WebhookEndpoint.objects.create(url=url, events=sorted(set(event_types)), description=description,
                                              enabled=enabled, secret=secret, created_by=user)
    events.forget_subscriptions()
    logger.info("Webhook endpoint %s created by user %s for %s", endpoint.pk, getattr(user, "pk", None),
                ", ".join(endpoint.events))
    return endpoint, secret


def update(endpoint, **fields):
    url, event_types = fields.get("url", endpoint.url), fields.get("events", endpoint.events)
    clean(url, event_types)
    if fields.get("enabled"):
        fields.update(disabled_reason="", failing_since=None)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(**fields)
    events.forget_subscriptions()
    endpoint.refresh_from_db()
    return endpoint


def replay(message_ids):
    """Send these messages (and the events they carry) again, now, with the same webhook-id: staff replay
    after fixing their receiver. Returns how many."""
    count = WebhookMessage.objects.filter(pk__in=message_ids).update(status=WebhookMessage.Status.PENDING,
                                                                     next_attempt_at=timezone.now())
    if count:
        events.nudge()
        logger.info("Webhook messages %s queued again", ", ".join(map(str, message_ids)))
    return count
