"""What staff see when providers refuse: real sender workers, PostgreSQL and Redis, against an SMTP
relay that answers as scripted and the fake SendGrid. Each case is checked against what the server
itself received, never only against the ledger's own counts."""

import collections

import pytest
from django.urls import reverse

from campaigns import services
from campaigns.models import Campaign, DeliveryLog, Suppression
from tests.support.factories import UserFactory
from tests.support.scripted_smtp import scripted_smtp  # noqa: F401 (fixture)
from tests.sending.test_pipeline import (
    assert_exactly_once, batches_sending, make_campaign, statuses, wait_for, wait_until_finished)

D = DeliveryLog.Status
S = Campaign.Status
pytestmark = pytest.mark.slow


def settled(campaign):
    """True once the campaign has started and stopped moving: no row is still being sent."""
    campaign.refresh_from_db()
    return campaign.status not in (S.SCHEDULED, S.IN_PROGRESS) and not batches_sending(campaign).exists()


def test_a_relay_refusing_every_recipient_pauses_the_campaign_with_the_reason_and_suppresses_nobody(
        start_worker, scripted_smtp, no_sendgrid, client):
    scripted_smtp.refuse_rcpt(".", "554 5.7.1 <{}>: Relay access denied")
    campaign = make_campaign(30, batch_size=10)
    start_worker(["scheduler", "senders"], concurrency=2)

    services.send_now(campaign.pk)
    wait_for(lambda: settled(campaign))

    assert campaign.status == S.PAUSED
    assert "554 5.7.1" in campaign.pause_reason and "Relay access denied" in campaign.pause_reason
    assert statuses(campaign) == {D.PENDING: 30}
    # Nothing of theirs left: the refused batches do not count as attempts.
    assert set(campaign.delivery_logs.values_list("attempts", flat=True)) == {0}
    assert not Suppression.objects.exists()
    assert (campaign.sent_count, campaign.failed_count, campaign.unknown_count) == (0, 0, 0)
    assert scripted_smtp.recipients() == []
    client.force_login(UserFactory(is_superuser=True))
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert 'id="dash-pause-reason"' in page and "Relay access denied" in page

    # Once the relay lets us send, resuming sends everyone, once.
    scripted_smtp.handler.rcpt_refusals.clear()
    services.resume(campaign.pk)
    wait_until_finished(campaign)
    assert campaign.status == S.COMPLETED and campaign.sent_count == 30 and campaign.pause_reason == ""
    assert set(campaign.delivery_logs.values_list("attempts", flat=True)) == {1}
    assert_exactly_once(campaign, collections.Counter(scripted_smtp.recipients()))


def test_a_relay_refusing_our_sender_at_every_rcpt_pauses_the_campaign_and_suppresses_nobody(
        start_worker, scripted_smtp, no_sendgrid):
    # Postfix with reject_unlisted_sender: an X.1.0 code, at RCPT, but about our From address.
    scripted_smtp.refuse_rcpt(".", "550 5.1.0 <news@acme.com>: Sender address rejected: User unknown in local "
                                   "recipient table")
    campaign = make_campaign(30, batch_size=10, from_email="news@acme.com")
    start_worker(["scheduler", "senders"], concurrency=2)

    services.send_now(campaign.pk)
    wait_for(lambda: settled(campaign))

    assert campaign.status == S.PAUSED
    assert "Sender address rejected" in campaign.pause_reason
    assert statuses(campaign) == {D.PENDING: 30}
    assert not Suppression.objects.exists()
    assert (campaign.sent_count, campaign.failed_count, campaign.unknown_count) == (0, 0, 0)
    assert scripted_smtp.recipients() == []

    # Once the relay knows our sender, resuming sends everyone, once.
    scripted_smtp.handler.rcpt_refusals.clear()
    services.resume(campaign.pk)
    wait_until_finished(campaign)
    assert campaign.status == S.COMPLETED and campaign.sent_count == 30
    assert_exactly_once(campaign, collections.Counter(scripted_smtp.recipients()))


def test_550_5_1_1_fails_and_suppresses_exactly_those_addresses(start_worker, scripted_smtp, no_sendgrid):
    scripted_smtp.refuse_rcpt(r"^r0000[37]@", "550 5.1.1 <{}>: Recipient address rejected: User unknown")
    scripted_smtp.refuse_rcpt(r"^r00011@", "554 5.7.1 Message refused by policy")
    campaign = make_campaign(20, batch_size=10)
    start_worker(["scheduler", "senders"], concurrency=2)

    services.send_now(campaign.pk)
    wait_until_finished(campaign)

    assert campaign.status == S.COMPLETED
    assert (campaign.sent_count, campaign.failed_count) == (17, 3)
    assert dict(Suppression.objects.values_list("email", "reason")) == {
        "r00003@example.com": Suppression.Reason.BOUNCED, "r00007@example.com": Suppression.Reason.BOUNCED}
    policy = DeliveryLog.objects.get(campaign=campaign, email="r00011@example.com")
    assert policy.status == D.FAILED and "5.7.1" in policy.last_error  # failed, but not a bounce
    assert_exactly_once(campaign, collections.Counter(scripted_smtp.recipients()))
    assert len(scripted_smtp.recipients()) == 17


def test_a_batch_with_too_many_dead_addresses_pauses_without_suppressing_until_staff_confirm(
        start_worker, scripted_smtp, no_sendgrid, client):
    # 6 of the first batch of 10 refused as unknown mailboxes: more than the breaker's 20 %.
    scripted_smtp.refuse_rcpt(r"^r0000[0-5]@", "550 5.1.1 <{}>: Recipient address rejected: User unknown")
    campaign = make_campaign(30, batch_size=10)
    start_worker(["scheduler", "senders"], concurrency=2)

    services.send_now(campaign.pk)
    wait_for(lambda: settled(campaign))

    assert campaign.status == S.PAUSED
    assert "refused 6 of a batch of 10" in campaign.pause_reason
    assert not Suppression.objects.exists()
    held = DeliveryLog.objects.filter(campaign=campaign, status=D.FAILED)
    assert held.count() == 6 and all(row.suppression_held and "5.1.1" in row.last_error for row in held)
    staff = UserFactory(is_superuser=True)
    client.force_login(staff)
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert "These addresses really are dead" in page

    response = client.post(reverse("admin:campaigns_campaign_action", args=[campaign.pk, "confirm_dead_addresses"]),
                           {"confirm": "yes"})
    assert response.status_code == 302
    wait_until_finished(campaign)

    assert campaign.status == S.COMPLETED
    assert set(Suppression.objects.values_list("email", flat=True)) == {f"r0000{i}@example.com" for i in range(6)}
    assert set(Suppression.objects.values_list("reason", flat=True)) == {Suppression.Reason.BOUNCED}
    assert not DeliveryLog.objects.filter(campaign=campaign, suppression_held=True).exists()
    assert (campaign.sent_count, campaign.failed_count) == (24, 6)
    assert_exactly_once(campaign, collections.Counter(scripted_smtp.recipients()))


def test_a_sendgrid_504_after_sendgrid_took_a_batch_leaves_it_unknown_and_never_resends_it(
        start_worker, fake_sendgrid, smtp_sink_server):
    fake_sendgrid.fail("504", count=1, after_accepting=True)
    campaign = make_campaign(600, batch_size=200)
    start_worker(["scheduler", "senders"], concurrency=2)

    services.send_now(campaign.pk)
    wait_until_finished(campaign)

    assert campaign.status == S.COMPLETED
    assert statuses(campaign) == {D.SENT: 400, D.UNKNOWN: 200}
    received = collections.Counter(r["to"][0] for r in fake_sendgrid.records())
    assert_exactly_once(campaign, received)
    unknown = set(DeliveryLog.objects.filter(campaign=campaign, status=D.UNKNOWN).values_list("email", flat=True))
    assert unknown <= set(received)  # every unknown row is an address SendGrid really had
    assert fake_sendgrid.stats()["requests_by_status"] == {"504 after accepting": 1, "202": 2}
    assert smtp_sink_server.count() == 0  # not re-sent over SMTP either
