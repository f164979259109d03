"""The audience (who a campaign will mail) and its plan: the A/B split and the pool, as the Send-now
confirmation, the campaign page and the API say them (issue 25, item 1)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.audience import plan
from campaigns.models import Campaign, CampaignVariant, DeliveryLog
from campaigns.sending import pipeline
from tests.admin.conftest import add_recipients
from tests.support.factories import CampaignFactory, SendingAccountFactory, SuppressionFactory, pool_of

pytestmark = pytest.mark.django_db
LISBON = {"match": "all", "conditions": [{"column": "city", "operator": "equals", "value": "Lisbon"}]}


def lisbon_campaign(**fields):
    """40 recipients, 20 in Lisbon, 3 of those and 1 elsewhere suppressed; an A/B test of 25 %, A and B."""
    campaign = CampaignFactory(segment=LISBON, ab_test_percent=25, ab_wait=timedelta(minutes=90), **fields)
    add_recipients(campaign, 20, data={"city": "Lisbon"})
    add_recipients(campaign, 20, data={"city": "Porto"}, start=20)
    for i in (0, 1, 2, 30):
        SuppressionFactory(email=f"r{i:04d}@example.com")
    for letter in "AB":
        CampaignVariant.objects.create(campaign=campaign, letter=letter, subject=f"Subject {letter}")
    return campaign


def test_the_audience_is_the_segment_without_the_suppressed_and_is_what_the_start_mails():
    campaign = lisbon_campaign()
    found = plan.audience(campaign)
    assert (found.recipients, found.in_segment, found.suppressed, found.size) == (40, 20, 3, 17)
    split = plan.ab_plan(campaign, found.size)
    assert (split.test, split.rest, split.letters_text) == (4, 13, "A/B")

    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SCHEDULED, scheduled_at=timezone.now())
    pipeline.start_campaign(campaign.pk)
    campaign.refresh_from_db()
    logs = DeliveryLog.objects.filter(campaign=campaign)
    mailed = logs.exclude(status=DeliveryLog.Status.SKIPPED)
    assert mailed.count() == found.size and logs.filter(variant__isnull=False).count() == split.test
    # After the start the same figure comes from the counters, and no longer changes.
    SuppressionFactory(email="r0010@example.com")
    after = plan.audience(campaign)
    assert (after.started, after.in_segment, after.suppressed, after.size) == (True, 20, 3, 17)


def test_the_plan_says_the_audience_the_ab_split_and_the_pool_with_thousands_separators():
    pool = pool_of(SendingAccountFactory(name="smtp-b"), SendingAccountFactory(name="smtp-a", enabled=False),
                   name="Main")
    campaign = lisbon_campaign(pool=pool)
    lines = plan.plan_lines(campaign, winner_at="at 12:13 UTC", test_when="now")
    assert lines["audience_line"] == "17 people will be mailed"
    assert lines["segment_note"] == ('20 of 40 recipients match the segment (all of: city equals "Lisbon"); '
                                     '3 suppressed, left out.')
    assert lines["ab_line"] == ("A/B test: 25 % (4) get variants A/B now, the other 75 % (13) get the winner at "
                                "12:13 UTC.")
    assert lines["pool"] == "Main (smtp-a (disabled), smtp-b)"
    assert plan.plan_lines(campaign)["ab_line"].endswith("get the winner 1 h 30 min after the start.")
    big = plan.Audience(recipients=49_200, in_segment=7_430, suppressed=7)
    assert plan.segment_note(big).startswith("7,430 of 49,200 recipients match")
    assert plan.plan_lines(campaign, found=big)["audience_line"] == "7,423 people will be mailed"


def test_no_ab_line_without_two_variants_and_the_default_pool_is_named():
    campaign = CampaignFactory(ab_test_percent=20)
    add_recipients(campaign, 3)
    CampaignVariant.objects.create(campaign=campaign, letter="A", subject="Only one")
    lines = plan.plan_lines(campaign)
    assert (lines["audience_line"], lines["segment_note"], lines["ab_line"]) == ("3 people will be mailed", "", "")
    assert lines["pool"].startswith("Default")
