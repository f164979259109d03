"""Delivering the outbox (run by the `webhooks` queue's task, and by beat every minute for retries).

`pack` puts each endpoint's waiting events into messages of up to WEBHOOK_BATCH_SIZE events; `deliver_due`
sends the messages that are due, each claimed with FOR UPDATE SKIP LOCKED and leased for the length of a
call, so two workers never send one message at once. A message is delivered at least once: an answer
other than 2xx (or none) is retried with exponential backoff until WEBHOOK_RETRY_FOR_SECONDS (3 days)
after it was made; every attempt is recorded with its status and the answer's first bytes. An endpoint
whose every attempt has failed for WEBHOOK_DISABLE_AFTER_SECONDS (a day) is disabled and whoever
registered it is told by email (campaigns.notifications.mail).
"""

import json
import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from campaigns.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from campaigns.notifications.mail import send_to_staff
from campaigns.webhooks import events, safety, signing

logger = logging.getLogger(__name__)
M = WebhookMessage.Status
# The longest gap between two attempts of one message.
MAX_RETRY_DELAY = timedelta(hours=10)

PACK = """
WITH picked AS (
    SELECT id FROM campaigns_webhookevent
    WHERE endpoint_id = %(endpoint)s AND message_id IS NULL ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), message AS (
    INSERT INTO campaigns_webhookmessage (endpoint_id, status, body, event_count, attempts, next_attempt_at, created_at)
    SELECT %(endpoint)s, 'pending', '', count(*), 0, now(), now() FROM picked HAVING count(*) > 0
    RETURNING id
)
UPDATE campaigns_webhookevent e SET message_id = message.id FROM message, picked WHERE e.id = picked.id
RETURNING e.message_id, e.id, e.type, e.data, e.created_at
"""


def pack(limit_messages=100):
    """Waiting events into messages; returns how many messages were made."""
    made = 0
    endpoint_ids = list(WebhookEndpoint.objects.filter(enabled=True).values_list("pk", flat=True))
    for endpoint_id in endpoint_ids:
        while made < limit_messages:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(PACK, {"endpoint": endpoint_id, "limit": settings.WEBHOOK_BATCH_SIZE})
                rows = cursor.fetchall()
                if not rows:
                    break
                body = json.dumps({"events": [
                    # Django reads jsonb as text (its JSONField decodes it), so the data is decoded here.
                    {"id": f"evt_{event_id}", "type": kind, "timestamp": created.isoformat(),
                     "data": json.loads(data) if isinstance(data, str) else data}
                    for _, event_id, kind, data, created in sorted(rows, key=lambda r: r[1])]}, default=str)
                WebhookMessage.objects.filter(pk=rows[0][0]).update(body=body)
            made += 1
    return made


def retry_delay(attempts):
    """The wait after the ATTEMPTS-th failed attempt: 5 s, 25 s, 2 min, 10 min, 52 min, 4 h, then 10 h."""
    seconds = settings.WEBHOOK_RETRY_BASE_SECONDS * 5 ** min(attempts - 1, 12)
    return min(timedelta(seconds=seconds), MAX_RETRY_DELAY)


def _claim():
    """The next due message of an enabled endpoint, leased for a call; None when none is due."""
    now = timezone.now()
    with transaction.atomic():
        message = (WebhookMessage.objects.select_for_update(skip_locked=True, of=("self",))
                   .select_related("endpoint")
                   .filter(status=M.PENDING, next_attempt_at__lte=now, endpoint__enabled=True)
                   .order_by("next_attempt_at", "id").first())
        if message is None:
            return None
        lease = now + timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS * 2 + 5)
        WebhookMessage.objects.filter(pk=message.pk).update(attempts=F("attempts") + 1, next_attempt_at=lease)
        message.attempts += 1
    return message


def send(message):
    """One attempt at MESSAGE; returns whether it was delivered."""
    endpoint = message.endpoint
    body = message.body.encode()
    timestamp = int(time.time())
    started = time.monotonic()
    status_code, head, error = None, b"", ""
    try:
        status_code, head = safety.post(endpoint.url, body, signing.headers(endpoint.secret, message.webhook_id,
                                                                             timestamp, body),
                                        settings.WEBHOOK_TIMEOUT_SECONDS, settings.WEBHOOK_MAX_ANSWER_BYTES)
    except safety.UnsafeUrl as refused:
        error = str(refused)
    except (OSError, ValueError) as failure:  # refused, reset, timed out, TLS, a malformed answer
        error = f"{type(failure).__name__}: {failure}"
    delivered = status_code is not None and 200 <= status_code < 300
    WebhookAttempt.objects.create(message=message, status_code=status_code,
                                  response_head=head.decode("utf-8", "replace"), error=error[:2000],
                                  duration_ms=int(1000 * (time.monotonic() - started)))
    now = timezone.now()
    if delivered:
        WebhookMessage.objects.filter(pk=message.pk).update(status=M.DELIVERED, delivered_at=now)
        WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=False).update(failing_since=None)
        return True
    gave_up = now - message.created_at >= timedelta(seconds=settings.WEBHOOK_RETRY_FOR_SECONDS)
    WebhookMessage.objects.filter(pk=message.pk).update(
        status=M.FAILED if gave_up else M.PENDING, next_attempt_at=now + retry_delay(message.attempts))
    logger.info("Webhook message %s to endpoint %s: attempt %s failed (%s)%s", message.pk, endpoint.pk,
                message.attempts, status_code or error[:200], ", gave up" if gave_up else "")
    _note_failure(endpoint.pk, now)
    return False


def _note_failure(endpoint_id, now):
    WebhookEndpoint.objects.filter(pk=endpoint_id, failing_since__isnull=True).update(failing_since=now)
    since = now - timedelta(seconds=settings.WEBHOOK_DISABLE_AFTER_SECONDS)
    reason = (f"Disabled on {timezone.localtime(now):%Y-%m-%d %H:%M %Z}: every delivery failed for "
              f"{settings.WEBHOOK_DISABLE_AFTER_SECONDS // 3600} hours.")
    if WebhookEndpoint.objects.filter(pk=endpoint_id, enabled=True, failing_since__lte=since).update(
            enabled=False, disabled_reason=reason):
        events.forget_subscriptions()
        endpoint = WebhookEndpoint.objects.select_related("created_by").get(pk=endpoint_id)
        logger.warning("Webhook endpoint %s disabled: every delivery failed since %s", endpoint_id,
                       endpoint.failing_since.isoformat())
        staff = [endpoint.created_by.email] if endpoint.created_by and endpoint.created_by.email else []
        staff += [a for a in settings.CAMPAIGN_REPORT_RECIPIENTS if a not in staff]
        if staff:
            try:
                send_to_staff(staff, f"Webhook endpoint disabled: {endpoint}",
                              f"{reason}\n\nEndpoint: {endpoint.url}\nEnable it again in the admin once it "
                              f"answers; its waiting messages are sent then.\n"
                              f"{settings.SITE_URL}/admin/campaigns/webhookendpoint/{endpoint.pk}/change/")
            except Exception:  # the notice is best effort: the endpoint is disabled and logged either way
                logger.exception("Webhook endpoint %s: the notice to staff could not be sent", endpoint_id)


def deliver_due(max_seconds=50):
    """Pack waiting events, then send due messages until none is due or MAX_SECONDS have passed.
    Returns (messages delivered, attempts failed)."""
    deadline = time.monotonic() + max_seconds
    delivered = failed = 0
    pack()
    while time.monotonic() < deadline:
        message = _claim()
        if message is None:
            if not pack():
                break
            continue
        if send(message):
            delivered += 1
        else:
            failed += 1
    return delivered, failed


def seconds_to_next_retry():
    """How long until the next pending message is due (None: none is waiting)."""
    due = (WebhookMessage.objects.filter(status=M.PENDING, endpoint__enabled=True).order_by("next_attempt_at")
           .values_list("next_attempt_at", flat=True).first())
    return None if due is None else max(0.0, (due - timezone.now()).total_seconds())
