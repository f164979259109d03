"""Issue 23, item 3: signed outbound webhooks, at least once. A local receiver verifies every request with
the Standard Webhooks reference library; a receiver that answers 500 gets the same message again; a
redirect is not followed; only the first bytes of an answer are read; an endpoint failing for a day is
disabled and its owner told."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import services
from campaigns.models import Campaign, DeliveryLog, WebhookAttempt, WebhookEndpoint, WebhookEvent, WebhookMessage
from campaigns.webhooks import dispatch, events
from tests.admin.conftest import add_recipients
from tests.sending.test_pipeline import wait_for
from tests.support.factories import CampaignFactory, UserFactory
from tests.webhooks.conftest import endpoint_for


@pytest.mark.slow
def test_a_campaign_sent_on_real_workers_reaches_a_receiver_that_verifies_every_request(
        private_urls_allowed, receiver, start_worker, smtp_sink_server, settings, worker_env):
    settings.WEBHOOK_BATCH_SIZE = worker_env["WEBHOOK_BATCH_SIZE"] = "4"
    endpoint_for(receiver, ["campaign.started", "campaign.completed", "delivery.sent"])
    start_worker(["scheduler", "senders"], concurrency=2, wait=False)
    start_worker(["webhooks"], concurrency=1)
    campaign = CampaignFactory()
    add_recipients(campaign, 10)
    services.send_now(campaign.pk)

    wait_for(lambda: "campaign.completed" in [e["type"] for e in receiver.events()], timeout=120)
    wait_for(lambda: len([e for e in receiver.events() if e["type"] == "delivery.sent"]) >= 10, timeout=60)
    got = receiver.events()
    assert receiver.unverified() == []
    sent = [e["data"] for e in got if e["type"] == "delivery.sent"]
    logs = dict(DeliveryLog.objects.filter(campaign=campaign).values_list("id", "email"))
    # Each delivery's event carries its id and state; at least once, so a receiver de-duplicates by event id.
    assert {d["delivery_id"] for d in sent} == set(logs)
    assert all(d["status"] == "sent" and d["campaign_id"] == campaign.pk and d["email"] == logs[d["delivery_id"]]
               for d in sent)
    assert len({e["id"] for e in got}) == len(got)
    assert [e["type"] for e in got if e["type"].startswith("campaign.")] == ["campaign.started", "campaign.completed"]
    completed = next(e["data"] for e in got if e["type"] == "campaign.completed")
    assert (completed["campaign_id"], completed["sent"], completed["status"]) == (campaign.pk, 10, "completed")
    # Delivery events are batched: one request carries up to WEBHOOK_BATCH_SIZE events.
    assert max(len(r.events) for r in receiver.requests) == 4
    assert len(receiver.requests) < len(got)


def test_a_receiver_answering_500_gets_the_same_message_again(private_urls_allowed, receiver, db):
    endpoint_for(receiver, ["campaign.paused"])
    campaign = CampaignFactory(status="in_progress")
    receiver.answers.append((500, b"boom: database down", {}))
    services.pause(campaign.pk)

    assert dispatch.deliver_due() == (0, 1)
    message = WebhookMessage.objects.get()
    assert message.status == "pending" and message.next_attempt_at > timezone.now()
    attempt = WebhookAttempt.objects.get()
    assert (attempt.status_code, attempt.response_head) == (500, "boom: database down")
    assert dispatch.deliver_due() == (0, 0)  # not due yet: the backoff is waited out

    WebhookMessage.objects.update(next_attempt_at=timezone.now())  # the backoff has passed
    assert dispatch.deliver_due() == (1, 0)
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == message.webhook_id
    assert first.body == second.body and second.verified
    assert [e["type"] for e in second.events] == ["campaign.paused"]
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("delivered", 2)
    assert dispatch.deliver_due() == (0, 0)  # delivered: never sent again, unless staff replay it


def test_the_backoff_grows_and_gives_up_after_three_days(private_urls_allowed, receiver, db, settings):
    assert [dispatch.retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [5, 25, 125, 625]
    assert dispatch.retry_delay(20) == timedelta(hours=10)
    endpoint_for(receiver, ["campaign.paused"])
    services.pause(CampaignFactory(status="in_progress").pk)
    dispatch.pack()
    WebhookMessage.objects.update(created_at=timezone.now() - timedelta(days=3, seconds=1))
    receiver.answers.append((503, b"", {}))
    assert dispatch.deliver_due() == (0, 1)
    assert WebhookMessage.objects.get().status == "failed"


def test_a_redirect_is_not_followed_and_only_the_first_bytes_are_read(private_urls_allowed, receiver, db, settings):
    settings.WEBHOOK_MAX_ANSWER_BYTES = 1000
    endpoint_for(receiver, ["campaign.paused", "campaign.cancelled"])
    receiver.answers.append((302, b"", {"Location": f"{receiver.url}/elsewhere"}))
    receiver.answers.append((200, b"x" * 1_000_000, {}))
    campaign = CampaignFactory(status="in_progress")
    services.pause(campaign.pk)
    dispatch.deliver_due()
    assert [r.path for r in receiver.requests] == ["/hooks"]  # the redirect's target never called
    assert WebhookAttempt.objects.get().status_code == 302
    WebhookMessage.objects.update(next_attempt_at=timezone.now())
    dispatch.deliver_due()
    assert len(WebhookAttempt.objects.order_by("-id").first().response_head) == 1000


def test_replay_sends_a_delivered_message_again(private_urls_allowed, receiver, db):
    from campaigns.webhooks import endpoints

    endpoint_for(receiver, ["campaign.paused"])
    services.pause(CampaignFactory(status="in_progress").pk)
    dispatch.deliver_due()
    endpoints.replay([WebhookMessage.objects.get().pk])
    dispatch.deliver_due()
    assert len(receiver.requests) == 2 and receiver.requests[0].body == receiver.requests[1].body


def test_an_endpoint_failing_for_a_day_is_disabled_and_its_owner_told(private_urls_allowed, receiver, db,
                                                                      smtp_sink_server):
    owner = UserFactory(email="ops@example.com")
    endpoint = endpoint_for(receiver, ["campaign.paused"], user=owner)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(hours=25))
    receiver.answers.append((500, b"", {}))
    services.pause(CampaignFactory(status="in_progress").pk)
    dispatch.deliver_due()
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "every delivery failed" in endpoint.disabled_reason
    told = wait_for(lambda: smtp_sink_server.messages(), timeout=10)
    assert told[0]["X-Sink-Rcpt-To"] == "ops@example.com" and "disabled" in told[0]["Subject"]
    # Disabled: no more events are recorded for it, nothing more is sent.
    services.pause(CampaignFactory(status="in_progress").pk)
    assert WebhookEvent.objects.count() == 1


def test_no_event_is_recorded_while_no_endpoint_wants_it(private_urls_allowed, receiver, db):
    endpoint_for(receiver, ["campaign.completed"])
    campaign = CampaignFactory(status="in_progress")
    services.pause(campaign.pk)
    assert not WebhookEvent.objects.exists()
    assert events.record_delivery_results([1, 2, 3]) == 0
    assert Campaign.objects.get(pk=campaign.pk).status == "paused"


def test_engagement_and_unsubscribes_are_events_too(private_urls_allowed, receiver, db):
    from campaigns.audience.suppression import unsubscribe
    from campaigns.engagement.opens_and_clicks import record_click
    from tests.admin.conftest import add_logs

    endpoint_for(receiver, ["delivery.clicked", "delivery.unsubscribed"])
    campaign = CampaignFactory(status="completed")
    log, = add_logs(campaign, ["sent"], sent_at=timezone.now() - timedelta(hours=1))
    record_click(log.pk, "https://shop.example.com/")
    record_click(log.pk, "https://shop.example.com/")  # a second click is not a first click
    unsubscribe(log.pk)
    unsubscribe(log.pk)
    dispatch.deliver_due()
    got = [(e["type"], e["data"]["delivery_id"]) for e in receiver.events()]
    assert got == [("delivery.clicked", log.pk), ("delivery.unsubscribed", log.pk)]
