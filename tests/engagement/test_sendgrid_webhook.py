"""The SendGrid Event Webhook through real HTTP requests against PostgreSQL: verification, de-duplication,
matching, counters and suppressions."""

import json
import time
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.db import connection

from campaigns.models import Campaign, CampaignLink, DeliveryLog, EngagementHour, Suppression
from tests.engagement.conftest import WEBHOOK_URL, event
from tests.support.factories import CampaignFactory, DeliveryLogFactory

pytestmark = pytest.mark.django_db
COUNTERS = ("delivered_count", "opened_count", "clicked_count", "bounced_count", "complained_count",
            "unsubscribed_count")


def counters(campaign):
    campaign.refresh_from_db()
    return {name: getattr(campaign, name) for name in COUNTERS}


def state():
    """Everything a webhook may change, to prove that a refused one changed nothing."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM campaigns_webhook_event")
        seen = cursor.fetchone()[0]
    logs = list(DeliveryLog.objects.order_by("pk").values_list(
        "delivered_at", "opened_at", "clicked_at", "bounced_at", "complained_at", "unsubscribed_at", "last_error"))
    return seen, logs, list(Campaign.objects.order_by("pk").values_list(*COUNTERS)), \
        list(Suppression.objects.values_list("email", flat=True))


def test_a_signed_batch_sets_timestamps_counts_recipients_once_and_suppresses(sendgrid, sent_campaign):
    campaign, (ann, bob, cid) = sent_campaign
    delivered_at = int(time.time()) - 120
    events = [
        event("processed", ann), event("delivered", ann, timestamp=delivered_at), event("delivered", bob),
        # Bob opens a minute after his delivery: a person (an open within seconds would be a machine's).
        event("open", ann), event("open", ann), event("open", bob, timestamp=int(time.time())),
        event("click", ann, url="https://acme.test/"),
        event("bounce", cid, type="bounce", reason="550 5.1.1 no such user"),
        event("spamreport", bob), event("unsubscribe", ann), event("group_unsubscribe", ann),
    ]
    response = sendgrid.post(events)

    assert response.status_code == 200
    assert response.json() == {"received": 11, "applied": 11, "duplicates": 0, "unmatched": 0, "ignored": 0,
                                "suppressed": 3, "settled": 0, "kept": 0}
    # Counters count recipients: Ann's two opens and her two kinds of unsubscribe count once.
    assert counters(campaign) == {"delivered_count": 2, "opened_count": 2, "clicked_count": 1,
                                  "bounced_count": 1, "complained_count": 1, "unsubscribed_count": 1}
    ann.refresh_from_db()
    assert ann.delivered_at == datetime.fromtimestamp(delivered_at, timezone.utc)
    assert ann.opened_at and ann.clicked_at and ann.unsubscribed_at and not ann.bounced_at
    cid.refresh_from_db()
    assert cid.bounced_at and cid.last_error == "SendGrid bounce: 550 5.1.1 no such user"
    suppressions = {s.email: (s.reason, s.source, s.campaign_id) for s in Suppression.objects.all()}
    assert suppressions == {
        cid.email: ("bounced", "sendgrid webhook: bounce", campaign.pk),
        bob.email: ("complained", "sendgrid webhook: spamreport", campaign.pk),
        ann.email: ("unsubscribed", "sendgrid webhook: unsubscribe", campaign.pk),
    }


def test_the_same_request_replayed_counts_once(sendgrid, sent_campaign):
    campaign, (ann, bob, _) = sent_campaign
    later = int(time.time())  # a minute after delivery: opens by people
    body = json.dumps([event("delivered", ann), event("open", ann, timestamp=later),
                       event("open", bob, timestamp=later)]).encode()
    headers = sendgrid.headers(body)

    first = sendgrid.post_raw(body, headers)
    before = state()
    replay = sendgrid.post_raw(body, headers)

    assert first.json()["applied"] == 3
    assert replay.status_code == 200
    assert replay.json() | {"received": 3} == {"received": 3, "applied": 0, "duplicates": 3, "unmatched": 0,
                                               "ignored": 0, "suppressed": 0, "settled": 0, "kept": 0}
    assert state() == before
    assert counters(campaign)["opened_count"] == 2


def test_an_event_retried_in_a_later_batch_counts_once(sendgrid, sent_campaign):
    campaign, (ann, bob, _) = sent_campaign
    opened = event("open", ann)
    sendgrid.post([opened])
    response = sendgrid.post([opened, event("open", bob), dict(opened)])  # and twice in the same batch

    assert response.json()["applied"] == 1 and response.json()["duplicates"] == 2
    assert counters(campaign)["opened_count"] == 2


@pytest.mark.parametrize("tamper", ["unsigned", "no timestamp", "other key", "body changed", "stale",
                                    "future", "garbage signature", "key not configured"])
def test_a_refused_request_changes_nothing(sendgrid, sent_campaign, settings, tamper):
    campaign, (ann, *_) = sent_campaign
    body = json.dumps([event("spamreport", ann), event("delivered", ann)]).encode()
    headers = sendgrid.headers(body)
    if tamper == "unsigned":
        headers = {}
    elif tamper == "no timestamp":
        del headers["HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP"]
    elif tamper == "other key":
        headers = sendgrid.headers(body, key=ec.generate_private_key(ec.SECP256R1()))
    elif tamper == "body changed":
        body = body.replace(b"spamreport", b"delivered ")
    elif tamper == "stale":  # properly signed, but 11 minutes old: a captured request replayed later
        headers = sendgrid.headers(body, timestamp=int(time.time()) - 660)
    elif tamper == "future":
        headers = sendgrid.headers(body, timestamp=int(time.time()) + 3600)
    elif tamper == "garbage signature":
        headers["HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE"] = "not base64 at all!"
    elif tamper == "key not configured":
        settings.SENDGRID_WEBHOOK_PUBLIC_KEY = ""
    before = state()

    response = sendgrid.post_raw(body, headers)

    assert response.status_code == 403
    assert response.json()["error"]
    assert state() == before
    assert counters(campaign)["complained_count"] == 0 and not Suppression.objects.exists()


def test_a_signed_body_that_is_not_an_event_array_is_a_bad_request(sendgrid, sent_campaign):
    before = state()  # event ids seen are not a model's table: a test with real workers may leave some
    for body in (b"{not json", b'{"event": "open"}'):
        response = sendgrid.post_raw(body, sendgrid.headers(body))
        assert response.status_code == 400
    assert state() == before


def test_only_post_is_accepted(sendgrid, client):
    assert client.get(WEBHOOK_URL).status_code == 405


def test_a_delivery_id_from_another_campaign_is_not_applied(sendgrid, sent_campaign):
    campaign, (ann, *_) = sent_campaign
    other = DeliveryLogFactory(recipient__campaign=CampaignFactory(), status=DeliveryLog.Status.SENT)
    # An event of this campaign naming another campaign's delivery (a forged or stale custom_arg).
    forged = event("spamreport", ann, delivery_id=str(other.pk), sg_message_id="")

    response = sendgrid.post([forged])

    assert response.json()["unmatched"] == 1 and response.json()["applied"] == 0
    other.refresh_from_db()
    assert other.complained_at is None and counters(other.campaign)["complained_count"] == 0
    assert Suppression.objects.get().email == ann.email  # the complaint itself still suppresses its address


def test_events_without_custom_args_are_matched_by_message_id_and_address(sendgrid, sent_campaign):
    campaign, (ann, bob, _) = sent_campaign
    bare = event("unsubscribe", bob, email=bob.email.upper())
    del bare["delivery_id"], bare["campaign_id"]

    response = sendgrid.post([bare])

    assert response.json()["applied"] == 1
    bob.refresh_from_db()
    ann.refresh_from_db()
    assert bob.unsubscribed_at and not ann.unsubscribed_at
    assert counters(campaign)["unsubscribed_count"] == 1


def test_a_blocked_bounce_is_recorded_but_a_hard_bounce_alone_suppresses(sendgrid, sent_campaign):
    campaign, (ann, bob, _) = sent_campaign
    sendgrid.post([event("bounce", ann, type="blocked", reason="IP reputation"),
                   event("bounce", bob, type="bounce", reason="550 unknown user"),
                   event("deferred", bob, response="421 try later")])

    assert list(Suppression.objects.values_list("email", "reason")) == [(bob.email, "bounced")]
    ann.refresh_from_db()
    assert ann.last_error == "SendGrid blocked: IP reputation"


def test_dropped_for_a_known_bad_address_suppresses_it(sendgrid, sent_campaign):
    _, (ann, bob, _) = sent_campaign
    sendgrid.post([event("dropped", ann, reason="Bounced Address"), event("dropped", bob, reason="Invalid SMTPAPI")])

    assert list(Suppression.objects.values_list("email", "reason")) == [(ann.email, "bounced")]
    bob.refresh_from_db()
    assert bob.last_error == "SendGrid dropped: Invalid SMTPAPI"


def test_unknown_event_types_and_events_without_id_are_ignored_and_counted(sendgrid, sent_campaign):
    campaign, (ann, *_) = sent_campaign
    no_id = event("open", ann)
    del no_id["sg_event_id"]
    response = sendgrid.post([event("account_status_change", ann), no_id])

    assert response.json()["ignored"] == 2
    assert counters(campaign)["opened_count"] == 0


def test_machine_opens_are_told_apart_and_clicks_counted_per_link(sendgrid, sent_campaign):
    """Issue 16, items 2-3: sg_machine_open, a proxy's user agent or an open within seconds of delivery is a
    machine's; each link's clickers are counted; the hourly counters add up to the campaign's."""
    campaign, (ann, bob, cid) = sent_campaign
    now = int(time.time())
    response = sendgrid.post([
        event("delivered", ann, timestamp=now - 600), event("delivered", bob, timestamp=now - 600),
        event("delivered", cid, timestamp=now - 2),
        event("open", ann, timestamp=now - 300, sg_machine_open=True, useragent="Mozilla/5.0"),  # Apple MPP
        event("open", ann, timestamp=now - 200, sg_machine_open=False, useragent="Mozilla/5.0 (iPhone) Mobile"),
        event("open", bob, timestamp=now - 100, sg_machine_open=False, useragent="Barracuda Sentinel"),
        event("open", cid, timestamp=now, sg_machine_open=False, useragent="Mozilla/5.0 (Windows NT 10.0)"),
        event("click", ann, timestamp=now - 100, url="https://acme.test/a"),
        event("click", ann, timestamp=now - 90, url="https://acme.test/b"),
        event("click", bob, timestamp=now - 80, url="https://acme.test/a"),
        event("click", bob, timestamp=now - 70, url="https://acme.test/a"),
    ])
    assert response.status_code == 200
    campaign.refresh_from_db()
    # Ann: a machine, then a person. Bob: a scanner, then clicks: a click is a person's open (issue 25, item 7).
    # Cid: two seconds after delivery, a machine.
    assert (campaign.opened_count, campaign.machine_opened_count, campaign.clicked_count) == (2, 3, 2)
    assert dict(CampaignLink.objects.filter(campaign=campaign).values_list("url", "clickers")) == {
        "https://acme.test/a": 2, "https://acme.test/b": 1}
    hours = EngagementHour.objects.filter(campaign=campaign)
    assert sum(h.opens for h in hours) == 2 and sum(h.machine_opens for h in hours) == 3
    assert sum(h.clicks for h in hours) == 2
