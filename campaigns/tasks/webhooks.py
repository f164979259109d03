"""Tasks on the `webhooks` queue: delivering the outbound webhooks' outbox (campaigns.webhooks.dispatch).

Queued when an event is recorded and by beat every minute; a retry due within the minute is scheduled
once (a Redis key keeps it to one), so a receiver that failed is tried again on time."""

from celery import shared_task
from django.core.cache import cache

from campaigns.webhooks import dispatch

RETRY_SCHEDULED_KEY = "webhooks:retry-scheduled"


@shared_task
def deliver_webhooks():
    delivered, failed = dispatch.deliver_due()
    wait = dispatch.seconds_to_next_retry()
    if wait is not None and wait < 60 and cache.add(RETRY_SCHEDULED_KEY, 1, timeout=int(wait) + 1):
        deliver_webhooks.apply_async(countdown=wait)
    return {"delivered": delivered, "failed": failed}
