"""In a real browser (issue 25, items 4 and 6): the preflight of an A/B test on a pool of accounts says how
long it takes through those accounts, what the test does and that each variant renders, without words meant
for whoever runs the server; the test email goes with the data of the audience's first recipient (or the one
staff choose), one message per variant, as the SMTP server received them. Screenshots at 1280 and 390 px."""

import re
from datetime import timedelta

import pytest

from campaigns.audience import segments
from campaigns.message import preflight
from campaigns.models import Campaign, CampaignVariant, PreflightRun, Recipient, Suppression
from tests.browser.test_campaign_journey import PASSWORD, Journey
from tests.support.factories import CampaignFactory, SendingAccountFactory, UserFactory, pool_of

expect = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed").expect
pytestmark = pytest.mark.slow
PEOPLE = [("mia@example.com", "Mia", "São Paulo"), ("gone@example.com", "Gus", "Lisbon"),
          ("rui@example.com", "Rui", "Lisbon"), ("ines@example.com", "Inês", "Lisbon"),
          ("joao@example.com", "", "Lisbon"), ("ana@example.com", "Ana", "Porto")]


def test_preflight_of_an_ab_test_on_a_pool_then_test_emails(page, live_server, screenshot_dir, smtp_sink_server,
                                                            no_sendgrid, dns_server, settings):
    settings.ALLOWED_FROM_DOMAINS = []
    UserFactory(username="staff", is_superuser=True)
    relay = SendingAccountFactory(name="relay-eu", port=smtp_sink_server.port, per_second=20)
    campaign = CampaignFactory(name="Spring sale", pool=pool_of(relay, name="EU relays"), ab_test_percent=40,
                               ab_wait=timedelta(hours=4),
                               html_body='<p>Hi {{ first_name }} in {{ city }}</p><a href="{{ unsubscribe_url }}">U</a>')
    CampaignVariant.objects.create(campaign=campaign, letter="A", subject="Spring sale starts")
    CampaignVariant.objects.create(campaign=campaign, letter="B", subject="{{ city }}: your spring discount")
    Recipient.objects.bulk_create(Recipient(campaign=campaign, email=email, first_name=name, data={"city": city})
                                  for email, name, city in PEOPLE)
    Campaign.objects.filter(pk=campaign.pk).update(total_recipients=len(PEOPLE))
    Suppression.objects.create(email="gone@example.com", reason="bounced")
    segments.save_segment(campaign.pk, {"match": "all", "conditions": [
        {"column": "city", "operator": "equals", "value": "Lisbon"}]})
    campaign.refresh_from_db()
    # The run itself is the imports worker's (tests/browser/test_segments_and_preflight.py): here its page.
    run = PreflightRun.objects.create(campaign=campaign, rows_total=4, campaign_updated_at=campaign.updated_at)
    preflight.run_preflight(run.pk)

    journey = Journey(page, live_server.url, screenshot_dir, prefix="preflight-ab-")
    journey.go("/admin/login/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")

    journey.go(f"/admin/campaigns/campaign/{campaign.pk}/preflight/")
    # 3 of the Lisbon audience are sent to (Gus is suppressed): 1 tests (40 %), then 4 h, then 2.
    expect(page.locator("#preflight-rendered")).to_have_text("3")
    expect(page.locator("#preflight-route")).to_have_text("the pool “EU relays” (relay-eu: 20 a second)")
    expect(page.locator("#preflight-estimate")).to_contain_text(
        "About 1 s to send the test to 1, the A/B wait of 4 h, then about 1 s to send the winner to the other 2, "
        "through the pool “EU relays”")
    expect(page.locator("#preflight-ab-plan")).to_have_text(
        "A/B test: 40 % of the audience (1 of 3 recipients) get one of 2 variants (A: 1, B: 0); after 4 h the "
        "variant with the most opens by people (machine opens left out) goes to the other 2.")
    rows = page.locator("#preflight-variants tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_contain_text("{{ city }}: your spring discount")
    expect(rows.nth(1)).to_contain_text("3 of 3")
    # Each heading counts the bullets under it.
    for kind in ("errors", "warnings", "notes"):
        heading = page.locator("h2", has_text=re.compile(rf"^{kind.capitalize()}: \d+$"))
        listed = page.locator(f"#preflight-{kind} > li")
        count = int(heading.inner_text().split(": ")[1])
        expect(listed).to_have_count(max(count, 1))  # "None." when there are none
    expect(page.locator("#preflight-warnings")).to_contain_text("1 recipient has no value for {{ first_name }}")
    expect(page.locator("#preflight-warnings")).to_contain_text(
        "The A/B test share (40 % of 3) is too small to test every variant: B would be sent to nobody")
    expect(page.locator("#preflight-notes")).to_contain_text("1 address of the audience is suppressed")
    text = page.locator("#content-main").inner_text()
    for meant_for_ops in ("ALLOWED_FROM_DOMAINS", "EMAIL_HOST", "docs/", "SendGrid", ".md", "no rate limit"):
        assert meant_for_ops not in text
    expect(page.locator("#preflight-auth-steps")).to_contain_text("SPF and DKIM through your SMTP server")
    journey.shoot("preflight")

    journey.go(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    expect(page.locator("#test-email-help")).to_contain_text("empty: the first recipient of the audience")
    page.fill("#id_addresses", "qa@example.com")
    page.locator("#test-email-form button").click()
    expect(page.locator("ul.messagelist")).to_have_text(
        "Test email sent via relay-eu: one message per variant (A, B) to each of 1 address, 2 of 2 messages in all "
        "(the data of rui@example.com, the first of the audience).")
    assert sorted(m["Subject"] for m in smtp_sink_server.messages()) == [
        "[TEST A] Spring sale starts", "[TEST B] Lisbon: your spring discount"]
    assert {m["X-Sink-Rcpt-To"] for m in smtp_sink_server.messages()} == {"qa@example.com"}

    smtp_sink_server.clear()
    page.fill("#id_addresses", "qa@example.com")
    page.fill("#id_recipient", "mia@example.com")
    page.locator("#test-email-form button").click()
    expect(page.locator("ul.messagelist")).to_contain_text("(the data of mia@example.com).")
    assert sorted(m["Subject"] for m in smtp_sink_server.messages()) == [
        "[TEST A] Spring sale starts", "[TEST B] São Paulo: your spring discount"]
    html = [m.get_body(("html",)).get_content() for m in smtp_sink_server.messages()]
    assert all("Hi Mia in São Paulo" in body for body in html)
    page.locator("#test-email-form").scroll_into_view_if_needed()
    journey.shoot("test-email")
