"""In a real browser: staff narrow a campaign's audience with the builder (the count follows each change),
save it, then run the preflight on a real imports worker and read its findings."""

import pytest

from campaigns.models import Campaign, Recipient
from tests.support.factories import CampaignFactory, UserFactory

expect = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed").expect
pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery staple"


def test_build_an_audience_then_preflight_it(page, live_server, start_worker):
    UserFactory(username="staff", is_superuser=True)
    campaign = CampaignFactory(name="Spring news", html_body='<p>Hi {{ first_name }} in {{ city }}</p>'
                               '<a href="https://shop.example/spring">Shop</a> <a href="{{ unsubscribe_url }}">U</a>')
    Recipient.objects.bulk_create(
        Recipient(campaign=campaign, email=f"p{i}@example.com", first_name=f"P{i}" if i % 3 else "",
                  data={"city": ["Lisbon", "Porto", "Paris"][i % 3], "plan": "pro" if i < 4 else "free"})
        for i in range(9))
    Campaign.objects.filter(pk=campaign.pk).update(total_recipients=9)
    start_worker(["imports"], concurrency=1)

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/campaigns/campaign/{campaign.pk}/change/")
    expect(page.locator("#segment-matching")).to_have_text("9")

    page.click("#segment-add")
    row = page.locator(".segment-condition").first
    row.locator(".segment-column").select_option("city")
    row.locator(".segment-operator").select_option("in")
    row.locator(".segment-value").fill("lisbon, PORTO")
    expect(page.locator("#segment-matching")).to_have_text("6")

    page.click("#segment-add")
    second = page.locator(".segment-condition").nth(1)
    second.locator(".segment-column").select_option("plan")
    second.locator(".segment-value").fill("pro")
    expect(page.locator("#segment-matching")).to_have_text("3")  # p1, p2, p3 (p0 is in Lisbon too)
    page.select_option("#segment-match", "any")
    expect(page.locator("#segment-matching")).to_have_text("7")

    second.locator(".segment-operator").select_option("before")  # a date field now
    second.locator(".segment-value").fill("2024-01-01")
    expect(page.locator("#segment-matching")).to_have_text("6")  # no plan is a date
    second.locator(".segment-operator").select_option("contains")
    second.locator(".segment-value").fill(" ")
    expect(page.locator("#segment-message")).to_contain_text("Condition 2: give a value to compare plan with")

    second.locator(".segment-remove").click()
    expect(page.locator("#segment-matching")).to_have_text("6")
    page.click("#segment-save")
    expect(page.locator("#segment-message")).to_contain_text("Segment saved: 6 of 9 recipients match")
    page.reload()
    expect(page.locator("#segment-description")).to_have_text('any of: city is one of "lisbon", "PORTO"')
    expect(page.locator("#segment-match")).to_have_value("any")

    page.click("#preflight-link")
    page.click("#preflight-start button")
    expect(page.locator("#preflight-errors")).to_contain_text("None: nothing blocks sending", timeout=60_000)
    expect(page.locator("#preflight-rendered")).to_have_text("6")
    expect(page.locator("#preflight-warnings")).to_contain_text(
        "3 recipients have no value for {{ first_name }}")  # p0, p3 and p6, all in Lisbon
    expect(page.locator("#preflight-links")).to_contain_text("https://shop.example/spring")
