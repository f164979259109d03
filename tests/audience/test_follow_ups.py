"""Follow-up campaigns (issue 16, item 1): each group's recipients against the hand-computed sets of
tests/support/engaged_campaign.py, suppressed addresses left out and counted, data copied in one statement."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns import services
from campaigns.audience import follow_ups
from campaigns.exceptions import CampaignError
from campaigns.models import Campaign, CampaignLink, DeliveryLog
from tests.sending.test_pipeline import wait_until_finished
from tests.support.engaged_campaign import LINK_A, LINK_B, emails, make_engaged_campaign
from tests.support.factories import CampaignFactory, SendingAccountFactory, pool_of

pytestmark = pytest.mark.django_db
S = follow_ups.Segment

# segment -> (recipients the follow-up goes to, suppressed members left out), by hand from the table.
EXPECTED = {
    S.OPENERS: (["r0", "r1", "r3"], ["r6"]),  # r3 clicked without a seen open; r2's open was a machine's
    S.NON_OPENERS: (["r2", "r4"], ["r5"]),  # r9 bounced; r7, r8 were never sent
    S.CLICKERS: (["r0", "r3"], []),
    S.NON_CLICKERS: (["r1", "r2", "r4"], ["r5", "r6"]),
    S.FAILED: (["r7"], []),
    S.UNKNOWN: (["r8"], []),
}


def recipients_of(campaign):
    return sorted(campaign.recipients.values_list("email", flat=True))


@pytest.mark.parametrize("segment", list(EXPECTED))
def test_each_group_gets_exactly_its_recipients_and_counts_the_suppressed(segment):
    campaign, _ = make_engaged_campaign()
    kept, suppressed = EXPECTED[segment]
    counted = {a.segment: (a.recipients, a.suppressed) for a in follow_ups.audiences(campaign) if a.link is None}
    assert counted[segment] == (len(kept), len(suppressed))

    made = follow_ups.create_follow_up(campaign.pk, segment)

    assert recipients_of(made.campaign) == emails(*kept)
    assert (made.recipients, made.suppressed) == (len(kept), len(suppressed))
    assert made.campaign.total_recipients == len(kept)


def test_the_clickers_of_a_chosen_link():
    campaign, _ = make_engaged_campaign()
    links = {link.url: link for link in CampaignLink.objects.filter(campaign=campaign)}
    by_link = {a.link.url: (a.recipients, a.suppressed) for a in follow_ups.audiences(campaign) if a.link}
    assert by_link == {LINK_A: (1, 0), LINK_B: (1, 0)}

    made = follow_ups.create_follow_up(campaign.pk, S.LINK_CLICKERS, link_id=links[LINK_B].pk)
    assert recipients_of(made.campaign) == emails("r3")


def test_a_link_of_another_campaign_is_refused():
    campaign, _ = make_engaged_campaign()
    other, _ = make_engaged_campaign(domain="other.test")
    foreign = CampaignLink.objects.filter(campaign=other).first()
    before = Campaign.objects.count()
    with pytest.raises(CampaignError, match="no such clicked link"):
        follow_ups.create_follow_up(campaign.pk, S.LINK_CLICKERS, link_id=foreign.pk)
    assert Campaign.objects.count() == before


def test_the_follow_up_is_a_draft_with_the_content_and_the_recipients_data_copied_in_one_insert():
    campaign, _ = make_engaged_campaign(subject="Last chance, {{ first_name }}", reply_to="help@example.com")
    with CaptureQueriesContext(connection) as queries:
        made = follow_ups.create_follow_up(campaign.pk, S.NON_CLICKERS)
    inserts = [q["sql"] for q in queries.captured_queries if "INSERT INTO campaigns_recipient" in q["sql"]]
    assert len(inserts) == 1  # one INSERT ... SELECT, whatever the number of recipients

    follow_up = made.campaign
    assert follow_up.status == Campaign.Status.DRAFT and follow_up.started_at is None
    assert (follow_up.subject, follow_up.html_body, follow_up.from_email, follow_up.reply_to) == (
        campaign.subject, campaign.html_body, campaign.from_email, campaign.reply_to)
    assert follow_up.name == f"{campaign.name} — did not click"
    fields = ("email", "first_name", "last_name", "data")
    original = {r["email"]: r for r in campaign.recipients.values(*fields)}
    copied = list(follow_up.recipients.values(*fields))
    assert copied and all(row == original[row["email"]] for row in copied)
    assert "plan" in follow_up.recipient_data_keys()


def test_a_campaign_that_never_started_sending_has_no_follow_ups():
    draft = CampaignFactory()
    with pytest.raises(CampaignError, match="has not started sending"):
        follow_ups.audiences(draft)
    with pytest.raises(CampaignError, match="has not started sending"):
        follow_ups.create_follow_up(draft.pk, S.NON_OPENERS)


def test_an_empty_group_leaves_no_draft_behind():
    campaign, ids = make_engaged_campaign()
    DeliveryLog.objects.filter(pk=ids["r8"]).update(status="sent")  # nobody is unknown any more
    before = Campaign.objects.count()
    with pytest.raises(CampaignError, match="No recipients unknown"):
        follow_ups.create_follow_up(campaign.pk, S.UNKNOWN)
    assert Campaign.objects.count() == before


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_follow_up_goes_through_the_original_campaigns_pool(start_worker, smtp_sink_server, second_sink,
                                                               no_sendgrid):
    start_worker(["scheduler", "senders"], concurrency=2)
    pool = pool_of(SendingAccountFactory(name="pool-relay", port=second_sink.port))
    campaign, _ = make_engaged_campaign(pool=pool, segment={"match": "all", "conditions": [
        {"column": "city", "operator": "equals", "value": "City1"}]})
    made = follow_ups.create_follow_up(campaign.pk, S.NON_CLICKERS)
    assert made.campaign.pool == pool and made.campaign.segment is None  # the group is its whole audience

    services.send_now(made.campaign.pk)
    wait_until_finished(made.campaign)

    # Every message went through the pool's account, none through the environment's SMTP server.
    assert sorted(second_sink.recipients()) == recipients_of(made.campaign) == ["r1@example.com", "r2@example.com",
                                                                              "r4@example.com"]
    assert smtp_sink_server.recipients() == []
    assert set(DeliveryLog.objects.filter(campaign=made.campaign).values_list("provider", flat=True)) == {"pool-relay"}


def ab_tested(subject_b="Your spring discount"):
    """The engaged campaign as an A/B test: r0 and r1 tested A, r2 tested B, B won and went to the rest."""
    from campaigns.models import CampaignVariant

    campaign, ids = make_engaged_campaign(subject="Not sent: the variants' are")
    a = CampaignVariant.objects.create(campaign=campaign, letter="A", subject="Spring is here")
    b = CampaignVariant.objects.create(campaign=campaign, letter="B", subject=subject_b, from_name="Ana",
                                       html_body='<p>B</p><a href="{{ unsubscribe_url }}">U</a>')
    DeliveryLog.objects.filter(pk__in=[ids["r0"], ids["r1"]]).update(variant=a)
    DeliveryLog.objects.filter(pk=ids["r2"]).update(variant=b)
    Campaign.objects.filter(pk=campaign.pk).update(ab_test_percent=30, ab_winner=b)
    campaign.refresh_from_db()
    return campaign


def test_a_follow_up_of_an_ab_test_uses_the_winners_content_and_each_recipients_own_subject():
    campaign = ab_tested()
    follow_up = follow_ups.create_follow_up(campaign.pk, S.OPENERS).campaign
    assert follow_up.subject == "{{ ab_subject }}"
    assert (follow_up.html_body, follow_up.from_email) == ('<p>B</p><a href="{{ unsubscribe_url }}">U</a>',
                                                           "Ana <news@example.com>")
    got = {r["email"]: (r["data"]["ab_variant"], r["data"]["ab_subject"], r["data"]["city"])
           for r in follow_up.recipients.values("email", "data")}
    assert got == {"r0@example.com": ("A", "Spring is here", "City0"), "r1@example.com": ("A", "Spring is here", "City1"),
                   "r3@example.com": ("B", "Your spring discount", "City3")}  # r3 got the winner with the rest
    follow_up.full_clean()  # {{ ab_subject }} is one of its merge tags


def test_a_variant_subject_with_merge_tags_gives_everyone_the_winners_subject():
    campaign = ab_tested(subject_b="Your discount, {{ first_name }}")
    follow_up = follow_ups.create_follow_up(campaign.pk, S.OPENERS).campaign
    assert follow_up.subject == "Your discount, {{ first_name }}"
