"""Which delivery each bounce is about, for many messages at once (one query per way of matching):

1. a bounce token (campaigns.message.signed_links.bounce_token): the VERP envelope sender
   bounces+<token>@<bounce domain> the bounce was delivered to, or our X-Mailer-Delivery header in
   the returned copy. Signed, so a forged bounce cannot name a delivery;
2. the returned message's Message-ID (DeliveryLog.provider_message_id), with the failed address
   when several deliveries share it (SendGrid's ids name a request);
3. failing both, the failed address's most recent sent delivery within BOUNCE_MATCH_WINDOW_DAYS.

A recipient matched by none is about no delivery of ours: it changes nothing, not even the
suppression list (a stranger's bounce is no proof about our recipients).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.db import connection
from django.utils import timezone

from campaigns.message.signed_links import delivery_id_from_bounce_token

BY_IDS = """
SELECT id, campaign_id, email FROM campaigns_deliverylog WHERE id = ANY(%(ids)s)
"""
BY_MESSAGE_IDS = """
SELECT provider_message_id, id, campaign_id, email FROM campaigns_deliverylog
WHERE provider_message_id = ANY(%(message_ids)s)
"""
# The latest sent delivery per address within the window.
BY_ADDRESSES = """
SELECT DISTINCT ON (email) email, id, campaign_id FROM campaigns_deliverylog
WHERE email = ANY(%(emails)s) AND status = 'sent' AND sent_at >= %(since)s
ORDER BY email, sent_at DESC, id DESC
"""


def delivery_ids_of(tokens):
    """The delivery ids of the tokens that verify (the rest are someone else's or forged)."""
    ids = []
    for token in tokens:
        try:
            ids.append(delivery_id_from_bounce_token(token))
        except signing.BadSignature:
            continue
    return ids


def match(readings):
    """For each reading, {recipient index: (delivery id, campaign id, email, how)} of its matched recipients."""
    token_ids = {index: delivery_ids_of(reading.tokens) for index, reading in enumerate(readings)}
    wanted_ids = sorted({pk for ids in token_ids.values() for pk in ids})
    wanted_message_ids = sorted({reading.message_id for reading in readings if reading.message_id})
    with connection.cursor() as cursor:
        by_id = {}
        if wanted_ids:
            cursor.execute(BY_IDS, {"ids": wanted_ids})
            by_id = {pk: (pk, campaign_id, email) for pk, campaign_id, email in cursor.fetchall()}
        by_message_id = {}
        if wanted_message_ids:
            cursor.execute(BY_MESSAGE_IDS, {"message_ids": wanted_message_ids})
            for message_id, pk, campaign_id, email in cursor.fetchall():
                by_message_id.setdefault(message_id, []).append((pk, campaign_id, email))

        results, unmatched = [], []
        for index, reading in enumerate(readings):
            found = {}
            deliveries = [by_id[pk] for pk in token_ids[index] if pk in by_id]
            by_message = by_message_id.get(reading.message_id, [])
            for position, recipient in enumerate(reading.recipients):
                delivery, how = _one(deliveries, recipient.address), "bounce token"
                if delivery is None:
                    delivery, how = _one(by_message, recipient.address), "Message-ID"
                if delivery is not None:
                    found[position] = (*delivery, how)
                else:
                    unmatched.append((index, position, recipient.address))
            results.append(found)

        emails = sorted({address for _, _, address in unmatched})
        if emails:
            since = timezone.now() - timedelta(days=settings.BOUNCE_MATCH_WINDOW_DAYS)
            cursor.execute(BY_ADDRESSES, {"emails": emails, "since": since})
            latest = {email: (pk, campaign_id, email) for email, pk, campaign_id in cursor.fetchall()}
            for index, position, address in unmatched:
                if address in latest:
                    results[index][position] = (*latest[address], "address, latest sent delivery")
    return results


def _one(deliveries, address):
    """The delivery of a token or Message-ID: the only one, else the one sent to ADDRESS."""
    if len(deliveries) == 1:
        return deliveries[0]
    for delivery in deliveries:
        if delivery[2] == address:
            return delivery
    return None
