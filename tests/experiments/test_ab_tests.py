"""A/B tests (campaigns.experiments.ab_tests): the split at the start, the winner's choice, and the winner's send
with real worker processes, checked against what the SMTP sink received."""

import collections
import datetime
import json
import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from campaigns import services
from campaigns.exceptions import CampaignError
from campaigns.experiments import ab_tests
from campaigns.models import Campaign, CampaignVariant, DeliveryLog, SendBatch, SendingAccount
from campaigns.sending import pipeline, sweep
from tests.sending.test_pipeline import make_campaign, status_of, wait_for, wait_until_finished
from tests.sending.test_routing import DAY_SECONDS, account_for, short_day, waiting_for_quota  # noqa: F401 (a fixture)
from tests.support.factories import UserFactory, pool_of

D = DeliveryLog.Status
B = SendBatch.Status
M = Campaign.AbMetric
HOUR = datetime.timedelta(hours=1)


def ab_campaign(n, letters="AB", percent=20, suppressed=0, **fields):
    campaign = make_campaign(n, suppressed=suppressed, ab_test_percent=percent, **fields)
    for letter in letters:
        CampaignVariant.objects.create(campaign=campaign, letter=letter, subject=f"Subject {letter}")
    return campaign


def start(campaign):
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SCHEDULED, scheduled_at=timezone.now())
    assert pipeline.start_campaign(campaign.pk)
    campaign.refresh_from_db()
    return campaign


def letters_of():
    return dict(CampaignVariant.objects.values_list("id", "letter"))


@pytest.mark.django_db
@pytest.mark.parametrize("letters", ["AB", "ABC", "ABCD"])
def test_the_test_share_is_split_evenly_and_each_batch_holds_one_variant(letters):
    campaign = start(ab_campaign(103, letters, percent=20, suppressed=3, batch_size=4, ab_wait=HOUR))

    rows = DeliveryLog.objects.filter(campaign=campaign)
    assert rows.count() == 103 and rows.filter(status=D.SKIPPED).count() == 3
    letter = letters_of()
    sizes = collections.Counter(letter[v] for v in rows.filter(variant__isnull=False).values_list("variant_id", flat=True))
    assert sum(sizes.values()) == 20  # 20 % of the 100 sendable rows
    assert set(sizes) == set(letters) and max(sizes.values()) - min(sizes.values()) <= 1
    assert not rows.filter(status=D.SKIPPED, variant__isnull=False).exists()
    pending = rows.filter(status=D.PENDING)
    for batch in SendBatch.objects.filter(campaign=campaign):
        in_batch = pending.filter(batch_number=batch.number)
        # The batch's rows are exactly its id range, and all test one variant (or are the held rest).
        assert set(in_batch.values_list("id", flat=True)) == set(
            pending.filter(id__range=(batch.first_id, batch.last_id)).values_list("id", flat=True))
        assert set(in_batch.values_list("variant_id", flat=True)) == {batch.variant_id}
        assert (batch.status == B.HELD) == (batch.variant_id is None)
    held = pending.filter(batch_number__in=SendBatch.objects.filter(campaign=campaign, status=B.HELD).values("number"))
    assert held.count() == 80
    assert campaign.ab_test_ends_at is not None and campaign.ab_winner is None


@pytest.mark.django_db
def test_the_test_rows_are_drawn_at_random_not_in_import_order():
    first = start(ab_campaign(200, "AB", percent=50, batch_size=10, ab_wait=HOUR))
    order = list(DeliveryLog.objects.filter(campaign=first).order_by("id").values_list("recipient_id", flat=True))
    assert order != sorted(order)  # not in import order


def engage(campaign, letter, opened=0, machine_opened=0, clicked=0):
    """Mark the first rows of a variant as sent, then opened by people, by machines, clicked."""
    ids = list(DeliveryLog.objects.filter(campaign=campaign, variant__letter=letter).order_by("id")
               .values_list("id", flat=True))
    now = timezone.now()
    DeliveryLog.objects.filter(id__in=ids).update(status=D.SENT, sent_at=now)
    DeliveryLog.objects.filter(id__in=ids[:opened]).update(opened_at=now)
    DeliveryLog.objects.filter(id__in=ids[:machine_opened]).update(machine_opened_at=now)
    DeliveryLog.objects.filter(id__in=ids[:clicked]).update(clicked_at=now)


@pytest.mark.django_db
def test_the_winner_by_opens_leaves_machine_opens_out():
    campaign = start(ab_campaign(60, "ABC", percent=50, ab_wait=HOUR))  # 10 rows each
    engage(campaign, "A", opened=2, machine_opened=10)
    engage(campaign, "B", opened=4)
    engage(campaign, "C", opened=3, clicked=9)
    figures = ab_tests.variant_figures(campaign.pk)
    assert [(f.letter, f.recipients, f.sent, f.opened, f.clicked) for f in figures] == [
        ("A", 10, 10, 2, 0), ("B", 10, 10, 4, 0), ("C", 10, 10, 3, 9)]
    assert CampaignVariant.objects.get(pk=ab_tests.choose_winner(figures, M.OPENS)).letter == "B"
    assert CampaignVariant.objects.get(pk=ab_tests.choose_winner(figures, M.CLICKS)).letter == "C"


@pytest.mark.django_db
def test_a_tie_goes_to_the_earlier_letter_and_rates_count_only_sent_rows():
    campaign = start(ab_campaign(40, "ABCD", percent=100, ab_wait=HOUR))  # 10 rows each
    engage(campaign, "D", opened=2)
    engage(campaign, "C", opened=2)
    engage(campaign, "B", opened=1)
    # A: 1 open of 5 sent is the same rate as D's and C's 2 of 10; the earliest letter wins.
    ids = list(DeliveryLog.objects.filter(campaign=campaign, variant__letter="A").values_list("id", flat=True))
    DeliveryLog.objects.filter(id__in=ids[:5]).update(status=D.SENT)
    DeliveryLog.objects.filter(id__in=ids[:1]).update(opened_at=timezone.now())
    figures = ab_tests.variant_figures(campaign.pk)
    assert CampaignVariant.objects.get(pk=ab_tests.choose_winner(figures, M.OPENS)).letter == "A"


@pytest.mark.django_db
def test_scheduling_refuses_a_test_share_without_two_to_four_variants():
    campaign = ab_campaign(5, "A", percent=20)
    with pytest.raises(CampaignError, match="two to four"):
        services.send_now(campaign.pk)
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT


# --- with real workers, checked at the SMTP sink ----------------------------------------------------

def received_subjects(sink, campaign):
    """Each address the sink received CAMPAIGN's mail for, with every subject it got."""
    got = collections.defaultdict(list)
    for message in sink.messages():
        if message["X-Campaign-ID"] == str(campaign.pk):
            got[message["X-Sink-Rcpt-To"]].append(str(message["Subject"]))
    return got


def expected_subjects(campaign, winner):
    """What each recipient should have got: its variant's subject, or the winner's for the rest."""
    subject = dict(CampaignVariant.objects.filter(campaign=campaign).values_list("id", "subject"))
    return {email: [subject[variant or winner.pk]] for email, variant in
            DeliveryLog.objects.filter(campaign=campaign).values_list("email", "variant_id")}


def test_the_winner_goes_to_the_rest_by_itself_when_the_wait_ends(start_worker, smtp_sink_server, no_sendgrid):
    start_worker(["scheduler", "senders"], concurrency=2)
    campaign = ab_campaign(45, "ABC", percent=40, batch_size=4, ab_wait=datetime.timedelta(seconds=2))
    services.send_now(campaign.pk)
    # The wait's own task sends the winner; when the test sends outlast the 2 s wait (a loaded machine),
    # that task finds them unfinished and the sweep (every 15 s in production) sends it.
    wait_until_finished(campaign, sweeping=True)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED and campaign.sent_count == 45
    assert campaign.ab_winner.letter == "A"  # nobody opened: a tie, to the earliest letter
    got = received_subjects(smtp_sink_server, campaign)
    assert got == expected_subjects(campaign, campaign.ab_winner)  # each recipient exactly once
    assert collections.Counter(s for [s] in got.values()) == {"Subject A": 6 + 27, "Subject B": 6, "Subject C": 6}


def wait_for_the_test_rows(campaign, test_rows):
    wait_for(lambda: DeliveryLog.objects.filter(campaign=campaign, variant__isnull=False, status=D.SENT).count()
             == test_rows)


def test_the_winner_by_clicks_once_the_test_ends_and_only_then_the_rest(start_worker, smtp_sink_server,
                                                                      no_sendgrid):
    start_worker(["scheduler", "senders"], concurrency=2)
    campaign = ab_campaign(30, "AB", percent=40, batch_size=3, ab_wait=HOUR, ab_metric=M.CLICKS)
    services.send_now(campaign.pk)
    wait_for_the_test_rows(campaign, 12)
    assert len(received_subjects(smtp_sink_server, campaign)) == 12  # the rest is held
    assert DeliveryLog.objects.filter(campaign=campaign, variant__isnull=True, status=D.PENDING).count() == 18
    b_rows = DeliveryLog.objects.filter(campaign=campaign, variant__letter="B").values_list("id", flat=True)
    DeliveryLog.objects.filter(id__in=list(b_rows)[:2]).update(clicked_at=timezone.now())

    # The wait ends (moved here, not waited for); the sweep finds it and sends the winner.
    Campaign.objects.filter(pk=campaign.pk).update(ab_test_ends_at=timezone.now())
    wait_until_finished(campaign, sweeping=True)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED and campaign.ab_winner.letter == "B"
    got = received_subjects(smtp_sink_server, campaign)
    assert got == expected_subjects(campaign, campaign.ab_winner) and len(got) == 30


SITE = "https://mail.example.test"


def test_staff_pick_the_winner_sooner_with_its_from_name_and_content(start_worker, smtp_sink_server, no_sendgrid,
                                                                    settings, worker_env, client):
    settings.SITE_URL = SITE
    worker_env.update(SITE_URL=SITE)
    start_worker(["scheduler", "senders"], concurrency=2)
    campaign = ab_campaign(20, "AB", percent=50, batch_size=5, ab_wait=HOUR)
    CampaignVariant.objects.filter(campaign=campaign, letter="B").update(
        from_name="Ann at Acme",
        html_body='<p>Variant B for {{ first_name }}: <a href="https://b.acme.test/offer">Offer</a></p>'
                  '<a href="{{ unsubscribe_url }}">Unsubscribe</a>')
    services.send_now(campaign.pk)
    wait_for_the_test_rows(campaign, 10)
    b = CampaignVariant.objects.get(campaign=campaign, letter="B")

    assert "Variant B" in services.pick_ab_winner(campaign.pk, b.pk)
    with pytest.raises(CampaignError, match="already variant B"):
        services.pick_ab_winner(campaign.pk, b.pk)
    wait_until_finished(campaign)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED and campaign.ab_winner == b
    got = received_subjects(smtp_sink_server, campaign)
    assert got == expected_subjects(campaign, b) and len(got) == 20
    for message in smtp_sink_server.messages():
        if message["Subject"] == "Subject B":
            assert message["From"] == "Ann at Acme <news@example.com>"
            html = message.get_body(("html",)).get_content()
            assert "Variant B for First" in html
            # Its tracked link leads to the variant's own link, for test rows and the rest alike.
            tracked = re.search(r'href="([^"]+/t/c/[^"]+)"', html).group(1)
            assert client.get("/" + tracked.split("/", 3)[3])["Location"] == "https://b.acme.test/offer"
        else:
            assert message["From"] == "Acme <news@example.com>"


@pytest.mark.django_db
def test_retrying_failed_rows_sends_each_with_its_variant_or_the_winner():
    campaign = start(ab_campaign(40, "AB", percent=50, batch_size=3, ab_wait=HOUR))
    a, b = CampaignVariant.objects.filter(campaign=campaign).order_by("letter")
    assert ab_tests.send_winner(campaign.pk, b.pk) == "B"
    rows = DeliveryLog.objects.filter(campaign=campaign)
    failed = [*rows.filter(variant=a)[:4], *rows.filter(variant=b)[:2], *rows.filter(variant__isnull=True)[:5]]
    rows.filter(pk__in=[r.pk for r in failed]).update(status=D.FAILED)
    Campaign.objects.filter(pk=campaign.pk).update(failed_count=len(failed))

    services.retry_failed(campaign.pk)

    retried = rows.filter(pk__in=[r.pk for r in failed])
    batches = {batch.number: batch for batch in SendBatch.objects.filter(campaign=campaign)}
    for row in retried:
        assert row.status == D.PENDING
        assert batches[row.batch_number].variant_id == (row.variant_id or b.pk)
        assert batches[row.batch_number].status in (B.QUEUED, B.WAITING)
    # A's 4 rows in batches of 3 (3 + 1), B's 2 and the rest's 5 (B, the winner: 3 + 3 + 1).
    sizes = sorted(batches[n].size for n in set(retried.values_list("batch_number", flat=True)))
    assert sizes == [1, 1, 3, 3, 3]


# --- a variant that cannot render ----------------------------------------------------------------------

BAD_SUBJECT = "{{ first_name|upper }}, news"


def senders_tasks(redis_client):
    """Tasks for the senders queue in the broker: waiting in it, or delivered and not yet acknowledged."""
    unacked = [json.loads(raw) for raw in redis_client.hvals("unacked")]
    return redis_client.llen("senders") + sum(1 for _message, _exchange, queue in unacked if queue == "senders")


def test_a_variant_that_cannot_render_fails_its_rows_with_the_reason_and_pauses_without_looping(
        start_worker, smtp_sink_server, no_sendgrid, redis_client):
    start_worker(["scheduler", "senders"], concurrency=2)
    campaign = ab_campaign(40, "AB", percent=50, batch_size=5, ab_wait=HOUR)
    # Content that changed after it was checked (as a direct update would): scheduling would refuse it.
    CampaignVariant.objects.filter(campaign=campaign, letter="B").update(subject=BAD_SUBJECT)
    start(campaign)
    test_batches = SendBatch.objects.filter(campaign=campaign).exclude(status=B.HELD).count()

    def bounded_queue():
        # The senders' tasks, waiting or taken by a worker: never more than one per test batch.
        assert senders_tasks(redis_client) <= test_batches
        sweep.sweep()

    wait_for(lambda: status_of(campaign) == Campaign.Status.PAUSED, timeout=60, every=0.5, on_tick=bounded_queue)
    wait_for(lambda: not SendBatch.objects.filter(campaign=campaign, status=B.SENDING).exists())
    for _ in range(3):  # the sweep finds nothing to send again: the campaign is paused, its bad batch done
        bounded_queue()

    campaign.refresh_from_db()
    assert "variant B cannot be rendered" in campaign.pause_reason and "upper" in campaign.pause_reason
    rows = DeliveryLog.objects.filter(campaign=campaign)
    failed = rows.filter(status=D.FAILED)
    assert failed.exists() and not failed.exclude(variant__letter="B").exists()
    assert all("variant B cannot be rendered" in error for error in failed.values_list("last_error", flat=True))
    assert not rows.filter(variant__letter="B", status=D.SENT).exists()
    # Each batch of B was tried at most once; nothing of B reached the sink.
    b_batches = SendBatch.objects.filter(campaign=campaign, variant__letter="B")
    assert max(b_batches.values_list("attempts", flat=True)) == 1
    assert "Subject B" not in {s for subjects in received_subjects(smtp_sink_server, campaign).values()
                               for s in subjects}
    assert campaign.failed_count == failed.count() and campaign.sent_count == rows.filter(status=D.SENT).count()


@pytest.mark.django_db
@pytest.mark.parametrize("fields, error", [
    ({"subject": BAD_SUBJECT}, "variant B cannot be sent: its subject: Malformed merge tag {{ first_name|upper }}"),
    ({"html_body": "<p>Hello {{ first_name }}</p>"}, "variant B cannot be sent: its HTML: The HTML body must "
                                                      "contain an unsubscribe link"),
])
def test_scheduling_refuses_a_variant_that_cannot_be_sent_with_the_reason(fields, error):
    campaign = ab_campaign(5, "AB", percent=20)
    CampaignVariant.objects.filter(campaign=campaign, letter="B").update(**fields)
    for action in (services.send_now, lambda pk: services.schedule(pk, timezone.now() + HOUR)):
        with pytest.raises(CampaignError) as refused:
            action(campaign.pk)
        assert error in str(refused.value)
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT


@pytest.mark.django_db
def test_a_variant_is_checked_against_the_campaigns_imported_columns_when_saved():
    campaign = ab_campaign(2, "A", percent=20)  # its recipients have a "city" column
    variant = CampaignVariant(campaign=campaign, letter="B", subject="News from {{ city }}",
                              html_body='<p>{{ city }}</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>')
    variant.full_clean()
    variant.subject = "News from {{ town }}"
    variant.full_clean()  # a draft may use a tag an import still to come defines (issue 25 item 9) ...
    assert "Unknown merge tag {{ town }}" in variant.content_problems()["subject"]  # ... sending may not
    variant.subject = "News from {{ Town }}"  # no column becomes a tag with capitals
    with pytest.raises(ValidationError) as refused:
        variant.full_clean()
    assert "Unknown merge tag {{ Town }}" in str(refused.value.message_dict["subject"])


# --- a winner only from data ---------------------------------------------------------------------------------

def campaign_page(client, campaign):
    client.force_login(UserFactory(is_superuser=True))
    return client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()


@pytest.mark.django_db
def test_a_campaign_paused_during_the_wait_gets_its_winner_only_once_the_test_rows_are_sent(client):
    campaign = start(ab_campaign(20, "AB", percent=50, batch_size=5, ab_wait=HOUR))
    services.pause(campaign.pk)
    Campaign.objects.filter(pk=campaign.pk).update(ab_test_ends_at=timezone.now())  # the wait ends while paused

    assert ab_tests.send_winner(campaign.pk) is None  # the ETA task: no test row sent, nothing to choose from
    campaign.refresh_from_db()
    assert campaign.ab_winner is None and SendBatch.objects.filter(campaign=campaign, status=B.HELD).exists()
    assert "Waiting for the test sends before choosing a winner" in campaign_page(client, campaign)

    # Resumed, its test rows go out (as their batches would), and the figures choose.
    services.resume(campaign.pk)
    engage(campaign, "A", opened=1)
    engage(campaign, "B", opened=3)
    SendBatch.objects.filter(campaign=campaign, variant__isnull=False).update(status=B.DONE)
    assert sweep.sweep().ab_winners == [campaign.pk]
    campaign.refresh_from_db()
    assert campaign.ab_winner.letter == "B"
    assert "Waiting for the test sends" not in campaign_page(client, campaign)


def test_while_waiting_for_quota_the_winner_waits_for_the_test_sends_then_chooses_from_them(
        start_worker, smtp_sink_server, no_sendgrid, short_day, client):
    account = account_for(smtp_sink_server, "gmail", per_day=4)
    campaign = ab_campaign(20, "AB", percent=50, batch_size=5, ab_wait=datetime.timedelta(seconds=1),
                           pool=pool_of(account))
    start_worker(["scheduler", "senders"], concurrency=2)
    services.send_now(campaign.pk)
    waiting_for_quota(campaign, 4)  # 4 of the 10 test rows sent; the wait (1 s) is over
    wait_for(lambda: Campaign.objects.get(pk=campaign.pk).ab_test_ends_at <= timezone.now())

    sweep.sweep()  # as beat's would: the wait is over, but the test is not
    campaign.refresh_from_db()
    assert campaign.ab_winner is None
    assert "Waiting for the test sends before choosing a winner" in campaign_page(client, campaign)
    assert len(received_subjects(smtp_sink_server, campaign)) == 4  # nothing of the rest went out

    SendingAccount.objects.filter(pk=account.pk).update(per_day=0)  # no limit: room again when the batch wakes
    wait_for_the_test_rows(campaign, 10)
    b_rows = DeliveryLog.objects.filter(campaign=campaign, variant__letter="B").values_list("id", flat=True)
    DeliveryLog.objects.filter(id__in=list(b_rows)[:2]).update(opened_at=timezone.now())
    wait_until_finished(campaign, timeout=4 * DAY_SECONDS, sweeping=True)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED and campaign.ab_winner.letter == "B"
    got = received_subjects(smtp_sink_server, campaign)
    assert got == expected_subjects(campaign, campaign.ab_winner) and len(got) == 20


@pytest.mark.django_db
def test_when_no_test_row_could_be_sent_the_campaign_pauses_for_staff_to_pick_the_winner():
    campaign = start(ab_campaign(20, "AB", percent=50, batch_size=5, ab_wait=HOUR))
    DeliveryLog.objects.filter(campaign=campaign, variant__isnull=False).update(status=D.FAILED)
    SendBatch.objects.filter(campaign=campaign, variant__isnull=False).update(status=B.DONE)
    Campaign.objects.filter(pk=campaign.pk).update(ab_test_ends_at=timezone.now())

    assert sweep.sweep().ab_winners == []
    campaign.refresh_from_db()
    assert campaign.ab_winner is None and campaign.status == Campaign.Status.PAUSED
    assert "none of the test recipients could be sent to" in campaign.pause_reason

    b = CampaignVariant.objects.get(campaign=campaign, letter="B")
    assert "Variant B" in services.pick_ab_winner(campaign.pk, b.pk)
    campaign.refresh_from_db()
    assert campaign.ab_winner == b


def test_who_leads_is_said_in_whole_percents_of_the_metric():
    """Issue 25, item 3: the campaign page's A/B wait line ("B leads, 44 % vs 20 %")."""
    def figures(*rows):
        return [ab_tests.VariantFigures(i, letter, "", sent, sent, opened, clicked)
                for i, (letter, sent, opened, clicked) in enumerate(rows)]

    two = figures(("A", 10, 2, 1), ("B", 9, 4, 0))
    assert ab_tests.leader_text(two, M.OPENS) == "B leads, 44 % vs 20 %"
    assert ab_tests.leader_text(two, M.CLICKS) == "A leads, 10 % vs 0 %"
    assert ab_tests.leader_text(figures(("A", 10, 3, 0), ("B", 10, 3, 0)), M.OPENS) == "A and B tied at 30 %"
    assert ab_tests.leader_text(figures(("A", 10, 1, 0), ("B", 10, 3, 0), ("C", 10, 2, 0)), M.OPENS) == (
        "B leads, 30 % vs 20 % (C), 10 % (A)")
    assert ab_tests.leader_text(figures(("A", 0, 0, 0), ("B", 0, 0, 0)), M.OPENS) == "no test messages sent yet"
    assert ab_tests.leader_text(figures(("A", 4, 1, 0), ("B", 0, 0, 0)), M.OPENS) == (
        "only A has test sends so far: 25 %")


@pytest.mark.django_db
def test_a_start_in_chunks_draws_the_test_share_from_every_chunk_and_holds_the_winner_until_it_ends(settings):
    """Each chunk of the start gives the test its share of the chunk's sendable rows (a stratified random
    sample of the whole audience, not of its first chunk), the deal carrying on across chunks so that the
    variants' sizes differ by at most one; the rest is held."""
    settings.START_CHUNK_SIZE = 50
    campaign = start(ab_campaign(203, "ABC", percent=30, suppressed=3, batch_size=7, ab_wait=HOUR))

    rows = DeliveryLog.objects.filter(campaign=campaign)
    assert rows.count() == 203 and campaign.start_cursor is None and campaign.total_recipients == 203
    ids = sorted(campaign.recipients.values_list("pk", flat=True))
    test_rows = set(rows.filter(variant__isnull=False).values_list("recipient_id", flat=True))
    assert len(test_rows) == 60  # 30 % of the 200 sendable rows
    # From every chunk of 50 recipients (the first has the 3 suppressed): its share, rounded.
    assert [len(test_rows & set(ids[i:i + 50])) for i in range(0, 203, 50)] == [14, 15, 15, 15, 1]
    letter = letters_of()
    sizes = collections.Counter(letter[v] for v in rows.filter(variant__isnull=False).values_list("variant_id", flat=True))
    assert sorted(sizes.values()) == [20, 20, 20]
    held = SendBatch.objects.filter(campaign=campaign, status=B.HELD)
    assert sum(held.values_list("size", flat=True)) == 140 and not held.filter(variant__isnull=False).exists()
    for batch in SendBatch.objects.filter(campaign=campaign):
        mine = rows.filter(batch_number=batch.number, status=D.PENDING)
        assert len({r.variant_id for r in mine}) == 1 and mine.count() == batch.size
        assert (batch.first_id, batch.last_id) == (min(r.pk for r in mine), max(r.pk for r in mine))


@pytest.mark.django_db
def test_no_automatic_winner_while_the_start_still_creates_rows():
    campaign = start(ab_campaign(40, "AB", percent=50, batch_size=10, ab_wait=HOUR))
    DeliveryLog.objects.filter(campaign=campaign, variant__isnull=False).update(status=D.SENT)
    SendBatch.objects.filter(campaign=campaign, variant__isnull=False).update(status=B.DONE)
    Campaign.objects.filter(pk=campaign.pk).update(ab_test_ends_at=timezone.now() - HOUR, start_cursor=0)
    assert campaign.pk not in ab_tests.due_winners() and ab_tests.send_winner(campaign.pk) is None
    Campaign.objects.filter(pk=campaign.pk).update(start_cursor=None)
    assert ab_tests.due_winners() == [campaign.pk]
