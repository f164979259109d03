"""Queueing batches (campaigns/sending/dispatch.py): campaigns take turns in the senders queue, with
real worker processes and the SMTP sinks as the servers (issue 21 defect 11)."""

import collections

import pytest
from django.db.models import F, Value
from django.db.models.functions import Concat

from campaigns import services
from campaigns.models import Campaign, DeliveryLog, Recipient
from campaigns.sending.dispatch import batch_label, batches_ahead
from tests.sending.test_pipeline import (
    assert_exactly_once,
    make_campaign,
    statuses,
    wait_for,
    wait_until_finished,
)
from tests.support.factories import SendingAccountFactory, pool_of

S = Campaign.Status
D = DeliveryLog.Status


@pytest.mark.slow
def test_a_small_campaign_with_room_completes_while_a_big_paced_campaign_is_still_sending(
        start_worker, smtp_sink_server, second_sink, no_sendgrid, worker_env, settings):
    """The big campaign used to queue SEND_BATCHES_AHEAD (64) batches, each sleeping in a sender slot
    for its account's pace; the small one waited behind all of them."""
    settings.SEND_BATCHES_AHEAD = worker_env["SEND_BATCHES_AHEAD"] = 64
    paced = SendingAccountFactory(name="ses-sandbox", port=second_sink.port, per_second=2)
    big = make_campaign(400, batch_size=10, pool=pool_of(paced))
    small = make_campaign(5)  # the default pool: the environment's SMTP server, no limit
    start_worker(["scheduler", "senders"], concurrency=2)

    services.send_now(big.pk)
    wait_for(lambda: second_sink.count() >= 3)  # the big campaign is sending
    services.send_now(small.pk)
    wait_until_finished(small, timeout=60)

    assert small.status == S.COMPLETED and sorted(smtp_sink_server.recipients()) == sorted(
        small.recipients.values_list("email", flat=True))
    big.refresh_from_db()
    assert big.status == S.IN_PROGRESS and statuses(big)[D.PENDING] > 300  # still sending, at its pace
    services.cancel(big.pk)
    wait_until_finished(big, timeout=60)


@pytest.mark.slow
def test_batches_waiting_for_their_rate_leave_the_sender_slots_to_a_campaign_with_room(
        start_worker, smtp_sink_server, second_sink, no_sendgrid):
    """Three campaigns, each on its own account paced at 1/s, one batch of 100 each: every sender slot
    used to sleep through a whole batch (100 s), so the small campaign could only start once one of
    them had finished. A batch now waits in the queue, not its worker, once its rate waits pass
    SEND_RATE_WAIT_MAX_SECONDS, and its unsent rows go back to pending."""
    paced = []
    for i in range(3):
        campaign = make_campaign(100, batch_size=100, pool=pool_of(
            SendingAccountFactory(name=f"paced-{i}", port=second_sink.port, per_second=1)))
        Recipient.objects.filter(campaign=campaign).update(email=Concat(Value(f"c{i}-"), F("email")))
        paced.append(campaign)
    small = make_campaign(5)  # the default pool: the environment's SMTP server, no limit
    start_worker(["scheduler", "senders"], concurrency=2)

    for campaign in paced:
        services.send_now(campaign.pk)
    wait_for(lambda: second_sink.count() >= 3)  # both slots are taken by paced batches
    services.send_now(small.pk)
    wait_until_finished(small, timeout=300)

    assert small.status == S.COMPLETED and sorted(smtp_sink_server.recipients()) == sorted(
        small.recipients.values_list("email", flat=True))
    for campaign in paced:
        campaign.refresh_from_db()
        assert campaign.status == S.IN_PROGRESS and statuses(campaign)[D.PENDING] > 0, campaign.status
    for campaign in paced:
        services.cancel(campaign.pk)
    for i, campaign in enumerate(paced):
        wait_until_finished(campaign, timeout=60)
        wait_for(lambda: not campaign.send_batches.filter(status="sending").exists(), timeout=60)
        delivered = collections.Counter(m["X-Sink-Rcpt-To"] for m in second_sink.messages()
                                        if m["X-Sink-Rcpt-To"].startswith(f"c{i}-"))
        assert_exactly_once(campaign, delivered)
        # Released rows were never counted as attempts, nor left unknown.
        assert statuses(campaign)[D.UNKNOWN] == 0


def test_a_campaign_through_paced_accounts_queues_one_batch_ahead_per_account(db, settings):
    settings.SEND_BATCHES_AHEAD = 64
    paced = [SendingAccountFactory(name=f"paced-{i}", per_second=1) for i in range(2)]
    unlimited = SendingAccountFactory(name="unlimited")
    assert batches_ahead(make_campaign(1, pool=pool_of(*paced)).pk) == 2
    assert batches_ahead(make_campaign(1, pool=pool_of(paced[0], SendingAccountFactory(per_minute=60))).pk) == 2
    # An account without a pace sends as fast as the batches come: the campaign's batches fill the slots.
    assert batches_ahead(make_campaign(1, pool=pool_of(paced[0], unlimited)).pk) == 64
    assert batches_ahead(make_campaign(1).pk) == 64


def test_a_batch_task_is_labelled_with_its_campaign_for_flower():
    """Issue 25 item 15: Flower showed send_batch's args as "[2, 35]"."""
    assert batch_label(2, 35, name="Spring sale") == "campaign 2 «Spring sale», batch 35"
    assert batch_label(2, 35, "waiting for the rate limit of account relay-1 until 12:13:05 UTC", "Spring sale") == (
        "campaign 2 «Spring sale», batch 35, waiting for the rate limit of account relay-1 until 12:13:05 UTC")
    # One line, and short: a name cannot forge a line in the worker log or fill Flower's column.
    assert batch_label(2, 1, name="Spring\nsale\x1b[31m") == "campaign 2 «Spring sale\\x1b[31m», batch 1"
    assert len(batch_label(2, 1, name="x" * 300)) < 90
