"""Queueing batches (campaigns/sending/dispatch.py): campaigns take turns in the senders queue, with
real worker processes and the SMTP sinks as the servers (issue 21 defect 11)."""

import pytest

from campaigns import services
from campaigns.models import Campaign, DeliveryLog
from campaigns.sending.dispatch import batches_ahead
from tests.sending.test_pipeline import make_campaign, statuses, wait_for, wait_until_finished
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


def test_a_campaign_through_paced_accounts_queues_one_batch_ahead_per_account(db, settings):
    settings.SEND_BATCHES_AHEAD = 64
    paced = [SendingAccountFactory(name=f"paced-{i}", per_second=1) for i in range(2)]
    unlimited = SendingAccountFactory(name="unlimited")
    assert batches_ahead(make_campaign(1, pool=pool_of(*paced)).pk) == 2
    assert batches_ahead(make_campaign(1, pool=pool_of(paced[0], SendingAccountFactory(per_minute=60))).pk) == 2
    # An account without a pace sends as fast as the batches come: the campaign's batches fill the slots.
    assert batches_ahead(make_campaign(1, pool=pool_of(paced[0], unlimited)).pk) == 64
    assert batches_ahead(make_campaign(1).pk) == 64
