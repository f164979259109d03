"""Issue 16, items 1-2 in a real browser: a sent campaign's engagement on its page, then "New campaign to…"
the non-openers, counted before anything is made, and the draft it lands on. Screenshots at 1280 and
390 px go to test-artifacts/screenshots/."""

import pytest

from campaigns.models import Campaign
from tests.browser.test_campaign_journey import PASSWORD, Journey
from tests.support.engaged_campaign import make_engaged_campaign
from tests.support.factories import UserFactory

expect = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed").expect
pytestmark = pytest.mark.slow


def test_a_follow_up_to_the_non_openers(page, live_server, screenshot_dir):
    UserFactory(username="staff", is_superuser=True, password=PASSWORD)
    campaign, _ = make_engaged_campaign()
    journey = Journey(page, live_server.url, screenshot_dir, prefix="follow-up-")
    journey.go("/admin/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")

    journey.go(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    expect(page.locator("#dash-engagement")).to_be_visible()
    # Opened by people: r0, r1, r6, and r3 who clicked (issue 25, item 7: a click is a person's open).
    expect(page.locator("#dash-opened")).to_have_text("4")
    expect(page.locator("#dash-machine_opened")).to_have_text("1")
    expect(page.locator("#dash-links")).to_contain_text("https://shop.acme.test/sale?x=1&y=<2>")
    expect(page.locator(".engagement-chart polyline")).to_have_count(3)
    journey.shoot("campaign-engagement")

    page.locator("#follow-up-link").click()
    row = page.locator("#audience-non_openers")
    expect(row.locator(".recipients")).to_have_text("2")
    expect(row.locator(".suppressed")).to_have_text("1")
    # The same "Opened by people" as the campaign page: everyone in the group, the suppressed r6 included.
    openers = page.locator("#audience-openers")
    expect(openers.locator("td").first).to_have_text("Opened by people")
    expect(openers.locator(".in-group")).to_have_text("4")
    expect(openers.locator(".recipients")).to_have_text("3")
    assert Campaign.objects.count() == 1  # counted, nothing made yet
    journey.shoot("follow-up-page")

    row.locator("button").click()
    expect(page.locator("ul.messagelist")).to_contain_text("created with 2 recipients. 1 suppressed address left out.")
    follow_up = Campaign.objects.exclude(pk=campaign.pk).get()
    assert page.url.endswith(f"/admin/campaigns/campaign/{follow_up.pk}/change/")
    assert follow_up.status == "draft" and sorted(follow_up.recipients.values_list("email", flat=True)) == [
        "r2@example.com", "r4@example.com"]
    expect(page.locator("#id_subject")).to_have_value(campaign.subject)
    journey.shoot("follow-up-draft")
