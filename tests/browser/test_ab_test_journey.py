"""Issue 16, item 5 in a real browser: two variants and a test share set on the campaign page, the
variants' figures once it started, and the winner picked by hand. Screenshots at 1280 and 390 px go
to test-artifacts/screenshots/."""

import pytest
from django.utils import timezone

from campaigns.models import Campaign, DeliveryLog, SendBatch
from campaigns.sending import pipeline
from tests.admin.conftest import add_recipients
from tests.browser.test_campaign_journey import PASSWORD, Journey
from tests.support.factories import CampaignFactory, UserFactory

expect = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed").expect
pytestmark = pytest.mark.slow


def test_an_ab_test_set_up_then_the_winner_picked_by_hand(page, live_server, screenshot_dir):
    UserFactory(username="staff", is_superuser=True, password=PASSWORD)
    campaign = CampaignFactory()
    add_recipients(campaign, 10)
    journey = Journey(page, live_server.url, screenshot_dir, prefix="ab-test-")
    journey.go("/admin/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")

    journey.go(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    page.fill("#id_ab_test_percent", "40")
    page.select_option("#id_ab_metric", "opens")
    page.fill("#id_ab_wait", "01:00:00")
    for i, (letter, subject) in enumerate([("A", "Autumn sale"), ("B", "<b>Last days</b> of the sale")]):
        page.locator("#variants-group .add-row a").click()
        page.select_option(f"#id_variants-{i}-letter", letter)
        page.fill(f"#id_variants-{i}-subject", subject)
    page.fill("#id_variants-1-from_name", "Ann at Acme")
    journey.shoot("ab-test-form")
    page.click("input[name=_continue]")
    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")
    campaign.refresh_from_db()
    assert campaign.ab_test_percent == 40 and list(campaign.variants.values_list("letter", "from_name")) == [
        ("A", ""), ("B", "Ann at Acme")]

    # It starts (as the scheduler would), and B's test rows do better.
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SCHEDULED, scheduled_at=timezone.now())
    pipeline.start_campaign(campaign.pk)
    b = campaign.variants.get(letter="B")
    DeliveryLog.objects.filter(variant__isnull=False).update(status="sent")
    DeliveryLog.objects.filter(pk=DeliveryLog.objects.filter(variant=b).first().pk).update(opened_at=timezone.now())

    journey.go(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    panel = page.locator("#ab-test")
    expect(panel).to_contain_text("<b>Last days</b> of the sale")  # shown as text, not markup
    expect(panel.locator("tr.ab-variant").nth(1)).to_contain_text("1 (50.0 %)")
    journey.shoot("ab-test-figures")

    panel.get_by_role("button", name="Send B to the rest now").click()
    expect(page.locator("ul.messagelist")).to_contain_text("Variant B is the winner")
    expect(page.locator("#ab-winner")).to_have_text("Winner: variant B, sent to the rest.")
    campaign.refresh_from_db()
    assert campaign.ab_winner == b
    assert not SendBatch.objects.filter(campaign=campaign, status=SendBatch.Status.HELD).exists()
    journey.shoot("ab-test-winner")
