"""Issue 25, items 1, 3, 5 and 7 in a real browser: the campaign page tells the truth at a glance.

One campaign of 300 recipients, a segment of 100 (Lisbon), 5 of them suppressed, an A/B test of 20 % through a
pool of two SMTP accounts: its page and Send-now confirmation count the 95 who will be mailed and say the A/B
plan and the pool; during the A/B wait the header says who leads and until when; cancelled, it says so, sent
and skipped apart. Each is read at 1280 and at 390 px; screenshots go to test-artifacts/screenshots/. The
start and the sends are made by the real functions, not by workers: the wording is what is tested here."""

import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import services
from campaigns.engagement import opens_and_clicks
from campaigns.models import Campaign, CampaignVariant, DeliveryLog, Recipient, SendBatch
from campaigns.sending import pipeline
from tests.browser.conftest import NARROW, WIDE
from tests.browser.test_campaign_journey import Journey, log_in
from tests.support.engaged_campaign import IPHONE_MAIL
from tests.support.factories import (
    CampaignFactory, SendingAccountFactory, SuppressionFactory, UserFactory, pool_of,
)

expect = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed").expect
pytestmark = pytest.mark.slow
LISBON = {"match": "all", "conditions": [{"column": "city", "operator": "equals", "value": "Lisbon"}]}


def at_both_widths(page, check):
    """Run CHECK (expect() calls on what the page says) at 1280 and at 390 px."""
    for width in (WIDE, NARROW):
        page.set_viewport_size({"width": width, "height": 800})
        check()
    page.set_viewport_size({"width": WIDE, "height": 800})


def test_the_campaign_page_counts_the_audience_explains_the_ab_wait_and_a_cancel(page, live_server, screenshot_dir):
    UserFactory(username="staff", is_superuser=True)
    pool = pool_of(SendingAccountFactory(name="smtp-eu-1", per_second=20),
                   SendingAccountFactory(name="smtp-eu-2", per_second=20), name="Newsletter pool")
    campaign = CampaignFactory(name="Spring sale", pool=pool, ab_test_percent=20, ab_wait=timedelta(hours=2),
                               segment=LISBON)
    Recipient.objects.bulk_create(Recipient(campaign=campaign, email=f"p{i:04d}@example.com", first_name=f"F{i}",
                                            data={"city": "Lisbon" if i % 3 == 0 else "Porto"}) for i in range(300))
    Campaign.objects.filter(pk=campaign.pk).update(total_recipients=300)
    for i in range(0, 15, 3):  # five of Lisbon's hundred
        SuppressionFactory(email=f"p{i:04d}@example.com")
    for letter, subject in (("A", "Spring sale"), ("B", "Last days of spring")):
        CampaignVariant.objects.create(campaign=campaign, letter=letter, subject=subject)
    journey = Journey(page, live_server.url, screenshot_dir, prefix="campaign-figures-")
    log_in(journey)
    change = f"/admin/campaigns/campaign/{campaign.pk}/change/"

    # Item 1: before the start, the header counts the audience, not the 300 imported.
    journey.go(change)

    def draft_header():
        expect(page.locator("#dash-headline")).to_have_text("Audience: 95 people will be mailed")
        expect(page.locator("#dash-segment-note")).to_contain_text(
            '100 of 300 recipients match the segment (all of: city equals "Lisbon"); 5 suppressed, left out.')
        expect(page.locator("#dash-ab-plan")).to_have_text(
            "A/B test: 20 % (19) get variants A/B at the start, the other 80 % (76) get the winner 2 hours after "
            "the start.")
        expect(page.locator("#dash-progress")).to_have_count(0)
        expect(page.locator("#dash-pending")).to_have_text("95")
    at_both_widths(page, draft_header)
    assert "300" not in page.locator("#dash-headline").inner_text()
    journey.shoot("draft-header")

    # The Send-now confirmation: the same audience, the A/B plan with the winner's time, the pool.
    page.locator("button.action-send_now").click()

    def confirmation():
        expect(page.locator("#confirm-audience")).to_have_text(
            "Start sending this campaign now? 95 people will be mailed. Sent mail cannot be recalled.")
        expect(page.locator("#confirm-segment")).to_contain_text("100 of 300 recipients match the segment")
        expect(page.locator("#confirm-ab")).to_have_text(re.compile(
            r"A/B test: 20 % \(19\) get variants A/B now, the other 80 % \(76\) get the winner at \d\d:\d\d UTC\."))
        expect(page.locator("#confirm-pool")).to_have_text(
            "Sent through the pool Newsletter pool (smtp-eu-1, smtp-eu-2).")
    at_both_widths(page, confirmation)
    journey.shoot("send-now-confirmation")

    # It starts (as the scheduler would): the start mails exactly what the page announced.
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SCHEDULED, scheduled_at=timezone.now())
    pipeline.start_campaign(campaign.pk)
    logs = DeliveryLog.objects.filter(campaign=campaign)
    assert logs.exclude(status="skipped").count() == 95 and logs.filter(variant__isnull=False).count() == 19
    # The test share is sent an hour ago; two of A's ten and four of B's nine are opened by people.
    hour_ago = timezone.now() - timedelta(hours=1)
    tested = logs.filter(variant__isnull=False)
    tested.update(status="sent", sent_at=hour_ago)
    SendBatch.objects.filter(campaign=campaign, variant__isnull=False).update(status=SendBatch.Status.DONE)
    Campaign.objects.filter(pk=campaign.pk).update(sent_count=19, started_at=hour_ago - timedelta(minutes=1))
    a, b = campaign.variants.order_by("letter")
    for variant, opens in ((a, 2), (b, 4)):
        for delivery_id in tested.filter(variant=variant).values_list("pk", flat=True)[:opens]:
            opens_and_clicks.record_open(delivery_id, IPHONE_MAIL, at=time.time())

    # Item 3: the A/B wait says what it waits for, who leads, and the finish includes the wait.
    journey.go(change)
    campaign.refresh_from_db()
    until = timezone.localtime(campaign.ab_test_ends_at).strftime("%H:%M")

    def ab_wait():
        expect(page.locator("#dash-headline")).to_have_text("19 of 95 processed (20 %)")
        expect(page.locator("#dash-ab-wait")).to_have_text(
            f"A/B test: waiting for the winner until {until} UTC (B leads, 44 % vs 20 % opened by people); the "
            "rest gets it then.")
        expect(page.locator("#dash-eta")).to_contain_text("(after the A/B wait)")
        # Item 7: plain SMTP cannot know deliveries: said so, and the rate beside it is "Accepted".
        expect(page.locator("#dash-delivered")).to_have_text("not reported by SMTP")
        expect(page.locator("#dash-rate-delivered")).to_have_count(0)
        expect(page.locator("#dash-rate")).to_have_text("100.0%")
        expect(page.locator("abbr.dash-label", has_text="Accepted")).to_have_attribute(
            "title", re.compile(r"Sent ÷ \(sent \+ failed \+ unknown\)"))
        expect(page.locator("#dash-opened")).to_have_text("6")
        expect(page.locator("#dash-rate-opened")).to_have_text("31.6%")
    at_both_widths(page, ab_wait)
    eta = page.locator("#dash-eta").inner_text().split(" (")[0]
    assert eta >= timezone.localtime(campaign.ab_test_ends_at).strftime("%Y-%m-%d %H:%M")
    journey.shoot("ab-wait")

    # Item 5: cancelled says cancelled, with sent and skipped apart; rates stay out of what was sent.
    page.goto("about:blank")  # the open page reloads itself when the status changes: no race with the goto below
    services.cancel(campaign.pk)
    journey.go(change)
    campaign.refresh_from_db()
    assert (campaign.sent_count, campaign.skipped_count - campaign.suppressed_at_start) == (19, 76)

    def cancelled():
        expect(page.locator("#dash-status")).to_have_text("Cancelled")
        expect(page.locator("#dash-headline")).to_have_text(
            "Cancelled: 19 of the audience of 95 sent, 76 not sent.")
        expect(page.locator("#dash-progress")).to_have_count(0)
        expect(page.locator("#dash-ended-label")).to_have_text("Cancelled")
        expect(page.locator("#campaign-dashboard")).not_to_contain_text("Completed")
        expect(page.locator("#dash-rate-opened")).to_have_text("31.6%")  # 6 of the 19 sent
    at_both_widths(page, cancelled)
    journey.shoot("cancelled")
