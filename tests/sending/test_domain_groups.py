"""Throttling per receiving domain (campaigns.sending.domain_groups): a domain group whose servers
defer us waits with backoff while the rest of the campaign goes on, each held recipient is sent once
the hold ends, and the groups' limits hold at the server. Real PostgreSQL, Redis, worker processes
and the local SMTP sink, which throttles one domain as Yahoo does ("421 4.7.0 [TSS04]")."""

import dataclasses
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns import services
from campaigns.models import Campaign, DeliveryLog, DomainGroup, DomainHold, Recipient
from campaigns.sending import domain_groups, pipeline, sweep
from campaigns.sending.ledger import check_counters
from campaigns.sending.providers.base import Outcome
from campaigns.sending.providers.smtp import SmtpProvider
from localservers import smtp_sink
from tests.sending.conftest import make_batch
from tests.sending.test_pipeline import assert_exactly_once, sink_addresses, statuses, wait_until_finished
from tests.support.factories import CampaignFactory, DeliveryLogFactory, RecipientFactory, UserFactory

D = DeliveryLog.Status
S = Campaign.Status
YAHOO = ("@yahoo.com", "@aol.com")


def make_groups(**yahoo_limits):
    """The Yahoo group (yahoo.com with aol.com) and Gmail, and no other; the workers read them afresh."""
    DomainGroup.objects.all().delete()
    DomainGroup.objects.create(name="Gmail", domains=["gmail.com", "googlemail.com"])
    domain_groups.forget_groups()
    return DomainGroup.objects.create(name="Yahoo", domains=["aol.com", "yahoo.com"], **yahoo_limits)


def campaign_to(addresses, **fields):
    campaign = CampaignFactory(**fields)
    Recipient.objects.bulk_create([RecipientFactory.build(campaign=campaign, email=address) for address in addresses])
    return campaign


@pytest.mark.slow
def test_a_throttled_group_waits_with_backoff_while_the_other_domains_go_out_and_each_recipient_gets_one_message(
        start_worker, smtp_sink_server, no_sendgrid, worker_env):
    yahoo = make_groups()
    # yahoo.com's servers throttle us twice, then take our mail; aol.com is Yahoo's too, so it waits with it.
    smtp_sink.write_control(smtp_sink_server.control_file, throttle_rcpt=r"@yahoo\.com$", throttle_times=2)
    worker_env.update(SEND_DOMAIN_BACKOFF_SECONDS=0.5)
    addresses = ["y0@yahoo.com", "o0@example.com", "a0@aol.com", "o1@example.com", "y1@yahoo.com", "g0@gmail.com",
                 "o2@example.com", "a1@aol.com", "y2@yahoo.com", "o3@example.com"]
    campaign = campaign_to(addresses, batch_size=50)
    start_worker(["scheduler", "senders"], concurrency=1)

    services.send_now(campaign.pk)
    wait_until_finished(campaign, timeout=60)

    assert campaign.status == S.COMPLETED
    delivered = sink_addresses(smtp_sink_server)
    assert sorted(delivered) == sorted(addresses)  # nobody lost
    assert_exactly_once(campaign, delivered)  # nobody twice, counters equal rows
    assert statuses(campaign) == {D.SENT: len(addresses)}  # nothing unknown, nothing failed
    logs = DeliveryLog.objects.filter(campaign=campaign)
    assert set(logs.values_list("attempts", flat=True)) == {1}  # the holds used no attempt
    assert not logs.exclude(not_before=None).exists()
    # The other domains went out in the first pass, before any of the held group's.
    order = [message["X-Sink-Rcpt-To"] for message in smtp_sink_server.messages()]
    first_held = min(order.index(a) for a in addresses if a.endswith(YAHOO))
    assert all(order.index(a) < first_held for a in addresses if not a.endswith(YAHOO))
    # Deferred twice in a row: the second hold was the doubled backoff.
    hold = DomainHold.objects.get(campaign=campaign, group=yahoo)
    assert hold.deferrals == 2 and hold.last_reply == "421 4.7.0"


@pytest.mark.django_db
def test_a_campaign_whose_only_rows_left_are_held_stays_in_progress_through_the_sweep_and_a_cancel_skips_them(
        sink, no_sendgrid, settings):
    yahoo = make_groups()
    settings.SEND_DOMAIN_BACKOFF_SECONDS = 600
    smtp_sink.write_control(sink.control_file, throttle_rcpt=r"@yahoo\.com$")  # every time
    campaign = campaign_to(["y0@yahoo.com", "o0@example.com", "a0@aol.com"], status=S.SCHEDULED,
                           scheduled_at=timezone.now())
    pipeline.start_campaign(campaign.pk)

    report = pipeline.send_batch(campaign.pk, 0)

    hold = DomainHold.objects.get(campaign=campaign, group=yahoo)
    assert (report.sent, report.failed, report.unknown) == (1, 0, 0)
    assert 500 < report.retry_in <= 600  # the batch comes back when the hold ends
    held = DeliveryLog.objects.filter(campaign=campaign, status=D.PENDING)
    assert sorted(held.values_list("email", "not_before", "attempts")) == [
        ("a0@aol.com", hold.until, 0), ("y0@yahoo.com", hold.until, 0)]
    assert "Yahoo deferred us (421 4.7.0)" in held.first().last_error
    sweep.sweep()
    campaign.refresh_from_db()
    assert campaign.status == S.IN_PROGRESS  # neither finished nor failed while its rows wait

    services.cancel(campaign.pk)

    campaign.refresh_from_db()
    assert campaign.status == S.CANCELLED
    assert statuses(campaign) == {D.SENT: 1, D.SKIPPED: 2}
    assert check_counters([campaign.pk]) == []
    assert sorted(sink_addresses(sink)) == ["o0@example.com"]


@pytest.mark.django_db
def test_the_campaign_page_shows_which_domains_are_held_back_and_until_when_and_not_once_the_hold_ends(client):
    yahoo = make_groups()
    campaign = CampaignFactory(status=S.IN_PROGRESS)
    until = timezone.now() + timedelta(minutes=10)
    for address in ("y0@yahoo.com", "a0@aol.com"):
        DeliveryLogFactory(recipient=RecipientFactory(campaign=campaign, email=address), not_before=until)
    DeliveryLogFactory(recipient=RecipientFactory(campaign=campaign, email="o0@example.com"))
    hold = DomainHold.objects.create(campaign=campaign, group=yahoo, until=until, last_reply="421 4.7.0")
    client.force_login(UserFactory(is_superuser=True))
    page = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    live = reverse("admin:campaigns_campaign_dashboard_json", args=[campaign.pk])

    expected = f"Held back: aol.com, yahoo.com until {timezone.localtime(until):%H:%M}"
    assert expected in client.get(page).content.decode()
    note = client.get(live).json()["domain_holds"]
    assert expected in note and "Yahoo: 2 recipients so far" in note

    hold.until = timezone.now() - timedelta(hours=1)  # (the database's now() is the test transaction's start)
    hold.save()
    assert "Held back" not in client.get(page).content.decode()
    assert client.get(live).json()["domain_holds"] == ""


def throttled_batch(campaign, addresses):
    batch = make_batch([(i + 1, address, "", "", {"code": "C"}) for i, address in enumerate(addresses)],
                       campaign_id=campaign.pk)
    return dataclasses.replace(batch, domains=domain_groups.DomainThrottle.for_campaign(campaign.pk))


@pytest.mark.django_db
def test_a_group_s_per_second_limit_holds_at_the_server_while_other_domains_are_not_paced(sink, redis_client):
    make_groups(per_second=2)
    addresses = [f"y{i}@yahoo.com" for i in range(6)] + ["o0@example.com", "o1@example.com"]
    campaign = campaign_to(addresses)

    results = SmtpProvider().send_batch(throttled_batch(campaign, addresses))

    assert [r.outcome for r in results] == [Outcome.SENT] * len(addresses)
    arrivals = [t for t, message in zip(sink.receive_times(), sink.messages())
                if message["X-Sink-Rcpt-To"].endswith(YAHOO)]
    assert len(arrivals) == 6
    # Never more than two of the group's messages in any window of one second, at the server.
    assert all(later - earlier >= 1.0 for earlier, later in zip(arrivals, arrivals[2:]))


@pytest.mark.django_db
def test_a_group_over_its_per_minute_limit_is_held_back_until_the_window_has_room(sink, redis_client):
    yahoo = make_groups(per_minute=2)
    addresses = ["y0@yahoo.com", "a0@aol.com", "o0@example.com", "y1@yahoo.com", "a1@aol.com", "g0@gmail.com"]
    campaign = campaign_to(addresses)

    results = SmtpProvider().send_batch(throttled_batch(campaign, addresses))

    outcomes = {address: result for address, result in zip(addresses, results)}
    assert [outcomes[a].outcome for a in addresses] == [Outcome.SENT] * 3 + [Outcome.DEFERRED] * 2 + [Outcome.SENT]
    assert sorted(sink_addresses(sink)) == sorted(["y0@yahoo.com", "a0@aol.com", "o0@example.com", "g0@gmail.com"])
    hold = DomainHold.objects.get(campaign=campaign, group=yahoo)
    assert hold.deferrals == 0  # a limit of ours, not a deferral: no backoff
    assert timezone.now() + timedelta(seconds=30) < hold.until <= timezone.now() + timedelta(seconds=61)
    assert {outcomes[a].hold_until for a in ("y1@yahoo.com", "a1@aol.com")} == {hold.until}


@pytest.mark.django_db
def test_a_deferral_that_is_not_throttling_stays_with_its_recipient_and_holds_nobody_back(sink, redis_client):
    make_groups()
    sink.set_faults(defer_rcpt=r"^y0@")  # 451 4.3.0: this mailbox, this time
    addresses = ["y0@yahoo.com", "y1@yahoo.com", "a0@aol.com"]
    campaign = campaign_to(addresses)

    results = SmtpProvider().send_batch(throttled_batch(campaign, addresses))

    assert [(r.outcome, r.hold_until) for r in results] == [
        (Outcome.DEFERRED, None), (Outcome.SENT, None), (Outcome.SENT, None)]
    assert not DomainHold.objects.exists()
