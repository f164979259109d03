"""The outbound event types and their recording in the outbox (WebhookEvent): one row per event and
subscribed endpoint, written by one INSERT … SELECT in the caller's transaction, so an event exists
exactly when the change it reports committed.

The sending hot path pays nothing while no enabled endpoint wants delivery events: which types are
wanted is read at most every SUBSCRIPTIONS_TTL seconds per process.
"""

import time

from celery import current_app
from django.db import connection, transaction

from campaigns.models import WebhookEndpoint

DELIVER_TASK = "campaigns.tasks.webhooks.deliver_webhooks"
CAMPAIGN_EVENTS = ("campaign.started", "campaign.paused", "campaign.completed", "campaign.failed",
                   "campaign.cancelled")
DELIVERY_EVENTS = ("delivery.sent", "delivery.failed", "delivery.unknown", "delivery.bounced", "delivery.complained",
                   "delivery.opened", "delivery.clicked", "delivery.unsubscribed")
IMPORT_EVENTS = ("import.succeeded", "import.failed")
EVENT_TYPES = CAMPAIGN_EVENTS + DELIVERY_EVENTS + IMPORT_EVENTS
# A campaign transition (campaigns.states) and the event it is.
TRANSITION_EVENTS = {"start": "campaign.started", "pause": "campaign.paused", "complete": "campaign.completed",
                     "fail": "campaign.failed", "cancel": "campaign.cancelled"}
SUBSCRIPTIONS_TTL = 5.0

_subscribed = {"types": frozenset(), "read_at": float("-inf")}


def subscribed_types():
    """The event types at least one enabled endpoint wants (cached for SUBSCRIPTIONS_TTL seconds)."""
    now = time.monotonic()
    if now - _subscribed["read_at"] > SUBSCRIPTIONS_TTL:
        wanted = WebhookEndpoint.objects.filter(enabled=True).values_list("events", flat=True)
        _subscribed["types"] = frozenset(t for events in wanted for t in events)
        _subscribed["read_at"] = now
    return _subscribed["types"]


def forget_subscriptions():
    """Read the subscriptions again at the next event (an endpoint was added or changed here)."""
    _subscribed["read_at"] = float("-inf")


def nudge():
    transaction.on_commit(lambda: current_app.send_task(DELIVER_TASK))


def _insert(sql, params):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted = cursor.rowcount
    if inserted:
        nudge()
    return inserted


CAMPAIGN_EVENT = """
INSERT INTO campaigns_webhookevent (endpoint_id, type, data, created_at)
SELECT e.id, %(type)s, jsonb_build_object(
    'campaign_id', c.id, 'name', c.name, 'status', c.status, 'total', c.total_recipients, 'sent', c.sent_count,
    'failed', c.failed_count, 'skipped', c.skipped_count, 'unknown', c.unknown_count,
    'started_at', c.started_at, 'completed_at', c.completed_at, 'last_error', c.last_error), now()
FROM campaigns_webhookendpoint e JOIN campaigns_campaign c ON c.id = %(campaign)s
WHERE e.enabled AND %(type)s = ANY(e.events)
"""


def record_transition(campaign_id, transition_name):
    """A campaign's state changed by TRANSITION_NAME (campaigns.states): its event, if it has one."""
    event = TRANSITION_EVENTS.get(transition_name)
    if event is None or event not in subscribed_types():
        return 0
    return _insert(CAMPAIGN_EVENT, {"type": event, "campaign": campaign_id})


# STATUS_EVENT is an SQL expression naming the event of each row (d is the delivery log).
DELIVERY_EVENT = """
INSERT INTO campaigns_webhookevent (endpoint_id, type, data, created_at)
SELECT e.id, ev.type, jsonb_build_object(
    'delivery_id', d.id, 'campaign_id', d.campaign_id, 'email', d.email, 'status', d.status,
    'provider', d.provider, 'provider_message_id', d.provider_message_id, 'error', d.last_error,
    'sent_at', d.sent_at, 'at', now()), now()
FROM campaigns_deliverylog d
CROSS JOIN LATERAL (SELECT {status_event} AS type) ev
JOIN campaigns_webhookendpoint e ON e.enabled AND ev.type = ANY(e.events)
WHERE d.id = ANY(%(ids)s::bigint[])
ORDER BY d.id
"""


def record_delivery_results(delivery_ids):
    """Rows whose result was just written (sent, failed, unknown): one event each, per subscriber."""
    wanted = subscribed_types()
    if not delivery_ids or not wanted & {"delivery.sent", "delivery.failed", "delivery.unknown"}:
        return 0
    sql = DELIVERY_EVENT.format(status_event="'delivery.' || d.status")
    return _insert(sql, {"ids": list(delivery_ids)})


def record_delivery_events(event, delivery_ids):
    """An engagement EVENT (delivery.opened, .clicked, .bounced, .complained, .unsubscribed) of these rows."""
    if not delivery_ids or event not in subscribed_types():
        return 0
    return _insert(DELIVERY_EVENT.format(status_event="%(event)s::text"), {"ids": list(delivery_ids), "event": event})


IMPORT_EVENT = """
INSERT INTO campaigns_webhookevent (endpoint_id, type, data, created_at)
SELECT e.id, %(type)s, jsonb_build_object(
    'import_id', i.id, 'campaign_id', i.campaign_id, 'status', i.status, 'file', i.original_name,
    'rows', i.total_rows, 'imported', i.imported, 'invalid', i.invalid, 'duplicates_in_file', i.duplicates_in_file,
    'already_present', i.already_present, 'suppressed', i.suppressed, 'error', i.error), now()
FROM campaigns_webhookendpoint e JOIN campaigns_recipientimport i ON i.id = %(import)s
WHERE e.enabled AND %(type)s = ANY(e.events)
"""


def record_import(import_id, succeeded):
    event = "import.succeeded" if succeeded else "import.failed"
    if event not in subscribed_types():
        return 0
    return _insert(IMPORT_EVENT, {"type": event, "import": import_id})
