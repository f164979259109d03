"""Routing through a pool of sending accounts, end to end: real worker processes, real Redis and
PostgreSQL, the SMTP sinks as the accounts' servers (issue 15, item 8)."""

import collections

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns import services
from campaigns.admin.dashboard import dashboard_data
from campaigns.models import Campaign, DeliveryLog, SendBatch, SendingAccount
from campaigns.sending import routing, sweep
from tests.sending.test_pipeline import assert_exactly_once, make_campaign, status_of, wait_for, wait_until_finished
from tests.support.factories import SendingAccountFactory, UserFactory, pool_of

D = DeliveryLog.Status
S = Campaign.Status
pytestmark = pytest.mark.slow
DAY_SECONDS = 30  # a rolling "day" this long, so that the test sees the window move


def delivered(*sinks):
    return collections.Counter(m["X-Sink-Rcpt-To"] for sink in sinks for m in sink.messages())


def account_for(sink, name, **fields):
    return SendingAccountFactory(name=name, port=sink.port, **fields)


def sent_by(campaign):
    return dict(routing.sends_per_account(campaign.pk))


def logged_by_provider(campaign):
    return collections.Counter(DeliveryLog.objects.filter(campaign=campaign, status=D.SENT)
                               .values_list("provider", flat=True))


@pytest.fixture
def short_day(settings, worker_env):
    settings.SENDING_ACCOUNT_DAY_SECONDS = DAY_SECONDS
    worker_env["SENDING_ACCOUNT_DAY_SECONDS"] = DAY_SECONDS


@pytest.fixture
def shorter_day(settings, worker_env):
    """A 12 s "day" for a `serial` test: alone on the machine its first sends take about a second, so the
    wait for the window to move is still seen, and the test waits 12 s for it rather than 30."""
    settings.SENDING_ACCOUNT_DAY_SECONDS = worker_env["SENDING_ACCOUNT_DAY_SECONDS"] = 12


def waiting_for_quota(campaign, sent):
    """The campaign is in progress, SENT sent, and waiting for quota, with no batch still being sent
    (each one that met the limit has noted its wait): a bounded wait."""
    return wait_for(lambda: status_of(campaign) == S.IN_PROGRESS and campaign.sent_count == sent
                    and campaign.quota_wait_until is not None
                    and not SendBatch.objects.filter(campaign=campaign, status=SendBatch.Status.SENDING).exists(),
                    timeout=60)


def test_two_accounts_with_daily_caps_send_150_wait_and_finish_when_the_window_moves(
        start_worker, smtp_sink_server, second_sink, no_sendgrid, short_day, client):
    gmail_a = account_for(smtp_sink_server, "gmail-a", per_day=100)
    gmail_b = account_for(second_sink, "gmail-b", per_day=50)
    campaign = make_campaign(300, batch_size=25, pool=pool_of(gmail_a, gmail_b))
    start_worker(["scheduler", "senders"], concurrency=2)

    services.send_now(campaign.pk)
    waiting_for_quota(campaign, 150)

    assert (smtp_sink_server.count(), second_sink.count()) == (100, 50)
    counts = collections.Counter(DeliveryLog.objects.filter(campaign=campaign).values_list("status", flat=True))
    assert counts == {D.SENT: 150, D.PENDING: 150}  # nobody failed for quota
    assert not DeliveryLog.objects.filter(campaign=campaign, status=D.PENDING, attempts__gt=0).exists()
    client.force_login(UserFactory(is_superuser=True))
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert "Waiting for quota until" in page
    assert "<td>gmail-a</td><td>100</td>" in page and "<td>gmail-b</td><td>50</td>" in page
    assert dashboard_data(campaign)["estimated_finish"]

    wait_until_finished(campaign, timeout=4 * DAY_SECONDS)

    assert campaign.status == S.COMPLETED and campaign.sent_count == 300
    assert (smtp_sink_server.count(), second_sink.count()) == (200, 100)
    assert sent_by(campaign) == {"gmail-a": 200, "gmail-b": 100}
    assert logged_by_provider(campaign) == {"gmail-a": 200, "gmail-b": 100}
    assert_exactly_once(campaign, delivered(smtp_sink_server, second_sink))
    assert dashboard_data(campaign)["quota_wait"] == ""


@pytest.mark.serial  # never saw its campaign waiting for quota in 2 of 3 parallel runs (not understood yet)
def test_pause_and_resume_while_waiting_for_quota(start_worker, smtp_sink_server, no_sendgrid, shorter_day):
    campaign = make_campaign(60, batch_size=10, pool=pool_of(account_for(smtp_sink_server, "gmail", per_day=30)))
    start_worker(["scheduler", "senders"], concurrency=2)
    services.send_now(campaign.pk)
    waiting_for_quota(campaign, 30)

    services.pause(campaign.pk)
    assert status_of(campaign) == S.PAUSED
    services.resume(campaign.pk)

    wait_until_finished(campaign, timeout=120)
    assert campaign.status == S.COMPLETED and campaign.sent_count == 60 and campaign.failed_count == 0
    assert_exactly_once(campaign, delivered(smtp_sink_server))


@pytest.mark.serial  # never saw its campaign waiting for quota in 2 of 3 parallel runs (not understood yet)
def test_cancel_while_waiting_for_quota_skips_the_rest(start_worker, smtp_sink_server, no_sendgrid, short_day,
                                                       settings):
    campaign = make_campaign(60, batch_size=10, pool=pool_of(account_for(smtp_sink_server, "gmail", per_day=30)))
    start_worker(["scheduler", "senders"], concurrency=2)
    services.send_now(campaign.pk)
    waiting_for_quota(campaign, 30)
    settings.SWEEP_STALL_SECONDS = 0
    assert campaign.pk not in sweep.sweep().redispatched  # waiting is not stalling: no extra batch tasks

    services.cancel(campaign.pk)

    campaign.refresh_from_db()
    counts = collections.Counter(DeliveryLog.objects.filter(campaign=campaign).values_list("status", flat=True))
    assert campaign.status == S.CANCELLED and counts == {D.SENT: 30, D.SKIPPED: 30}
    assert_exactly_once(campaign, delivered(smtp_sink_server))


def test_an_account_refusing_its_password_is_disabled_and_the_others_take_over(
        start_worker, smtp_sink_server, password_sink, no_sendgrid, tmp_path, client):
    wrong = "wrong-Secret-7731"
    refused = account_for(password_sink, "office365", username="ann", secret=wrong, weight=10)
    working = account_for(smtp_sink_server, "gmail", username="bob", secret="gmail-Secret-5532")
    campaign = make_campaign(120, batch_size=20, pool=pool_of(refused, working))
    start_worker(["scheduler", "senders"], concurrency=2)

    services.send_now(campaign.pk)
    wait_until_finished(campaign)

    assert campaign.status == S.COMPLETED and campaign.sent_count == 120
    refused.refresh_from_db()
    assert not refused.enabled
    assert "authentication refused" in refused.disabled_reason and "535" in refused.disabled_reason
    assert password_sink.count() == 0 and smtp_sink_server.count() == 120
    assert sent_by(campaign) == {"gmail": 120}
    assert_exactly_once(campaign, delivered(smtp_sink_server, password_sink))
    client.force_login(UserFactory(is_superuser=True))
    pages = [reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
             reverse("admin:campaigns_campaign_dashboard_json", args=[campaign.pk]),
             reverse("admin:campaigns_sendingaccount_change", args=[refused.pk]),
             reverse("admin:campaigns_sendingaccount_changelist"),
             reverse("admin:campaigns_deliverylog_changelist")]
    for url in pages:
        html = client.get(url).content.decode()
        assert wrong not in html and "gmail-Secret-5532" not in html
    assert "authentication refused" in client.get(pages[2]).content.decode()
    logs = "".join(path.read_text(errors="replace") for path in tmp_path.glob("*.log"))
    assert "sending account office365" in logs and "disabled: authentication refused" in logs
    assert wrong not in logs and "gmail-Secret-5532" not in logs


def test_from_domain_rules_choose_the_account(start_worker, smtp_sink_server, second_sink, no_sendgrid):
    acme = account_for(smtp_sink_server, "acme-relay", from_domains="acme.example.com")
    other = account_for(second_sink, "other-relay", from_domains="other.example.net\nnews.other.example.net")
    pool = pool_of(acme, other)
    for_other = make_campaign(40, batch_size=10, pool=pool, from_email="News <news@news.other.example.net>")
    for_acme = make_campaign(30, batch_size=10, pool=pool, from_email="hello@ACME.example.com")
    start_worker(["scheduler", "senders"], concurrency=2)

    services.send_now(for_other.pk)
    services.send_now(for_acme.pk)
    wait_until_finished(for_other)
    wait_until_finished(for_acme)

    assert sent_by(for_other) == {"other-relay": 40} and sent_by(for_acme) == {"acme-relay": 30}
    assert second_sink.count() == 40 and smtp_sink_server.count() == 30
    assert_exactly_once(for_other, delivered(second_sink))
    assert_exactly_once(for_acme, delivered(smtp_sink_server))


def test_a_from_domain_no_account_may_send_pauses_the_campaign_with_the_reason(
        start_worker, smtp_sink_server, no_sendgrid):
    pool = pool_of(account_for(smtp_sink_server, "acme-relay", from_domains="acme.example.com"))
    campaign = make_campaign(10, pool=pool, from_email="news@elsewhere.example.org")
    start_worker(["scheduler", "senders"], concurrency=1)

    services.send_now(campaign.pk)
    wait_for(lambda: status_of(campaign) == S.PAUSED)

    assert "No enabled account of this campaign's pool may send From elsewhere.example.org" in campaign.pause_reason
    assert smtp_sink_server.count() == 0 and campaign.failed_count == 0


def test_weights_share_the_traffic_between_accounts_without_limits(
        start_worker, smtp_sink_server, second_sink, no_sendgrid):
    heavy = account_for(smtp_sink_server, "heavy", weight=3)
    light = account_for(second_sink, "light", weight=1)
    campaign = make_campaign(400, batch_size=10, pool=pool_of(heavy, light))
    start_worker(["scheduler", "senders"], concurrency=1)

    services.send_now(campaign.pk)
    wait_until_finished(campaign)

    shares = sent_by(campaign)
    assert shares["heavy"] + shares["light"] == 400
    assert 2.5 <= shares["heavy"] / shares["light"] <= 3.5, shares
    assert_exactly_once(campaign, delivered(smtp_sink_server, second_sink))


def test_the_campaign_form_refuses_a_pool_that_cannot_send_its_from_domain(db):
    from campaigns.admin.forms import CampaignForm

    pool = pool_of(SendingAccountFactory(name="acme-relay", from_domains="acme.example.com"))
    form = CampaignForm(data={"name": "n", "subject": "s", "from_email": "news@elsewhere.example.org",
                              "html_body": "<p>x</p>", "batch_size": 10, "pool": pool.pk})
    assert not form.is_valid()
    assert "No enabled account of the pool" in str(form.errors["pool"])


def test_an_unreachable_account_fails_over_to_the_next(start_worker, smtp_sink_server, no_sendgrid, closed_port,
                                                       worker_env):
    worker_env.update(SEND_BACKOFF_SECONDS=0.01)
    down = SendingAccountFactory(name="down", port=closed_port, weight=5)
    up = account_for(smtp_sink_server, "up")
    campaign = make_campaign(60, batch_size=20, pool=pool_of(down, up))
    start_worker(["scheduler", "senders"], concurrency=2)

    services.send_now(campaign.pk)
    wait_until_finished(campaign)

    assert campaign.status == S.COMPLETED and sent_by(campaign) == {"up": 60}
    down.refresh_from_db()
    assert down.enabled and "unreachable" in down.last_error  # an outage does not disable an account
    assert_exactly_once(campaign, delivered(smtp_sink_server))


def test_a_sendgrid_account_and_an_smtp_account_share_a_campaign_within_their_caps(
        start_worker, smtp_sink_server, fake_sendgrid, short_day):
    sendgrid = SendingAccountFactory(name="sendgrid-main", kind="sendgrid", api_host=fake_sendgrid.url,
                                     secret=fake_sendgrid.api_key, per_day=70)
    smtp = account_for(smtp_sink_server, "relay", per_day=30)
    campaign = make_campaign(100, batch_size=25, pool=pool_of(sendgrid, smtp))
    start_worker(["scheduler", "senders"], concurrency=2)

    services.send_now(campaign.pk)
    wait_until_finished(campaign)

    assert campaign.status == S.COMPLETED
    assert sent_by(campaign) == logged_by_provider(campaign) == {"sendgrid-main": 70, "relay": 30}
    assert len(fake_sendgrid.recipients()) == 70 and smtp_sink_server.count() == 30
    got = delivered(smtp_sink_server) + collections.Counter(fake_sendgrid.recipients())
    assert_exactly_once(campaign, got)


def test_the_estimated_finish_counts_the_room_left_now_then_the_pools_daily_rate(db, clean_broker):
    from datetime import timedelta

    from django.utils import timezone

    pool = pool_of(SendingAccountFactory(name="a", per_day=100), SendingAccountFactory(name="b", per_day=50))
    campaign = make_campaign(1, pool=pool)
    routing.quota_for(SendingAccount.objects.get(name="a")).reserve(40)  # 60 + 50 room left today

    finish = routing.estimated_finish(campaign, pending=410, observed_rate=11)

    # 110 now at the observed 11/s, then 300 at 150 a day.
    expected = timezone.now() + timedelta(seconds=10) + timedelta(days=2)
    assert abs((finish - expected).total_seconds()) < 60
    assert routing.estimated_finish(campaign, pending=0, observed_rate=11) is None


def test_a_sendgrid_accounts_per_second_limit_splits_a_batch_into_paced_requests(db, clean_broker, fake_sendgrid,
                                                                                 batch_of):
    from tests.sending.test_pipeline import most_in_any_second

    account = SendingAccountFactory(name="sg", kind="sendgrid", api_host=fake_sendgrid.url,
                                    secret=fake_sendgrid.api_key, per_second=5)
    name, results = routing.send(batch_of(12), pool_of(account).pk)

    assert name == "sg" and [r.outcome.value for r in results] == ["sent"] * 12
    requests = collections.Counter(record["message_id"] for record in fake_sendgrid.records())
    assert sorted(requests.values()) == [2, 5, 5]
    assert most_in_any_second(sorted(record["received_at"] for record in fake_sendgrid.records())) <= 5


def test_sent_today_and_this_hour_follow_time_zone_in_a_half_hour_zone(db, settings, monkeypatch):
    """Issue 21 defect 12: in Asia/Kolkata (UTC+5:30) the day and the hour start at :30 UTC."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from django.utils import timezone

    from tests.support.factories import CampaignFactory

    settings.TIME_ZONE = "Asia/Kolkata"
    kolkata = ZoneInfo("Asia/Kolkata")
    account = SendingAccountFactory(name="gmail-1")
    campaign = CampaignFactory()

    def at(local):
        monkeypatch.setattr(timezone, "now", lambda: local.astimezone(ZoneInfo("UTC")))

    at(datetime(2026, 12, 5, 23, 50, tzinfo=kolkata))  # 18:20 UTC: yesterday, in Kolkata
    routing.record_usage(account.pk, campaign.pk, 5)
    at(datetime(2026, 12, 6, 0, 5, tzinfo=kolkata))  # 18:35 UTC: today
    routing.record_usage(account.pk, campaign.pk, 3)
    at(datetime(2026, 12, 6, 0, 40, tzinfo=kolkata))  # 19:10 UTC

    usage = routing.account_usage(account, hours=3)
    assert usage["today"] == 3 and usage["hour"] == 3
    assert [(f"{timezone.localtime(hour):%H:%M}", sent) for hour, sent in usage["series"]] == [
        ("22:00", 0), ("23:00", 5), ("00:00", 3)]


def test_a_paced_batch_shows_its_usage_as_it_goes_and_gives_back_its_places_when_a_time_limit_stops_it(
        start_worker, smtp_sink_server, no_sendgrid, worker_env):
    """Issue 21 defect 5: usage was written only when a batch ended, and the places a batch reserved
    were given back only on provider errors (a soft time limit kept them for the whole window)."""
    worker_env.update(SEND_SMTP_CONNECTIONS=2, SEND_BATCH_TIME_LIMIT=6)
    account = account_for(smtp_sink_server, "ses-sandbox", per_second=1, per_hour=1000)
    campaign = make_campaign(14, batch_size=14, pool=pool_of(account))
    start_worker(["scheduler", "senders"], concurrency=1)

    services.send_now(campaign.pk)
    # "Sent this hour" moves while the paced batch is still being sent, long before its last message.
    wait_for(lambda: routing.account_usage(account, hours=1)["hour"] >= 2 and smtp_sink_server.count() < 14,
             timeout=60, every=0.1)
    # Each attempt is stopped by the 6 s soft time limit after a few messages at 1/s, and sent again.
    wait_until_finished(campaign, timeout=180)

    campaign.refresh_from_db()
    received = len(smtp_sink_server.recipients())
    assert campaign.status == S.COMPLETED and campaign.sent_count + campaign.unknown_count == 14
    assert_exactly_once(campaign, delivered(smtp_sink_server))
    # Each place still taken in the account's hour is a message the server received or had in flight.
    assert received <= routing.quota_for(account).look().used["hour"] <= received + campaign.unknown_count
    assert sent_by(campaign) == {"ses-sandbox": campaign.sent_count}


class LedgerFailingAtTheThirdMark:
    """A batch's ledger whose database goes away when the third message's call begins."""

    def __init__(self):
        self.marks = 0

    def call_began(self, delivery_ids):
        from django.db import OperationalError

        self.marks += 1
        if self.marks == 3:
            raise OperationalError("server closed the connection unexpectedly")
        return set(delivery_ids)

    def call_ended(self, delivery_ids):
        pass

    def record(self, provider, results, **options):
        pass


def test_a_database_error_mid_batch_gives_back_the_places_of_the_messages_that_never_left(
        db, clean_broker, smtp_sink_server, settings, batch_of):
    import dataclasses

    from django.db import OperationalError

    settings.SEND_SMTP_CONNECTIONS = 1
    account = account_for(smtp_sink_server, "gmail-1", per_hour=100)
    batch = dataclasses.replace(batch_of(5, campaign_id=make_campaign(0).pk), ledger=LedgerFailingAtTheThirdMark())

    with pytest.raises(OperationalError):
        routing.send(batch, pool_of(account).pk)

    assert smtp_sink_server.count() == 2
    assert routing.quota_for(account).look().used["hour"] == 2  # not the 5 the batch reserved


def test_a_batch_whose_first_free_account_waits_only_for_its_rate_waits_that_second_not_for_quota(
        db, clean_broker, settings, smtp_sink_server, batch_of):
    """Chaos seed 18: one account of the pool at its day cap, the other at 1/s. The batch that gave up its
    rate wait was queued again as a quota wait (whole seconds rounded up, and a note on the campaign's
    page), so the 1/s account sent one message every 3 s."""
    import dataclasses

    from campaigns.exceptions import RateWaitTooLong
    from campaigns.sending.ratelimit import RateWaitBudget

    capped = account_for(smtp_sink_server, "capped", per_day=1)
    paced = account_for(smtp_sink_server, "paced", per_second=1)
    routing.quota_for(capped).reserve(1)  # at its day cap

    with pytest.raises(RateWaitTooLong) as raised:  # the pipeline gives each batch such a budget
        routing.send(dataclasses.replace(batch_of(3), rate_wait=RateWaitBudget(0.5)), pool_of(capped, paced).pk)

    assert [r.outcome.value for r in raised.value.results] == ["sent"]
    assert (raised.value.until - timezone.now()).total_seconds() < 2
    # What its re-queued task says in Flower (issue 25 item 15): which account it waits for, until when.
    until = raised.value.until
    assert routing.waiting_label(raised.value, until) == (
        f"waiting for the rate limit of account paced until {until:%H:%M:%S} UTC")
