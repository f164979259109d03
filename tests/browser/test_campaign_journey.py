"""A member of staff's whole journey in a real browser: every step through the admin's pages, with real
Celery workers and the SMTP sink behind them. Screenshots of each step at 1280 and 390 px go to
test-artifacts/screenshots/."""

import itertools
import re

import pytest
from django.core.management import call_command

from campaigns.models import Campaign
from tests.browser.conftest import NARROW, WIDE, fill_html_body
from tests.support.factories import CampaignFactory, UserFactory

expect = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed").expect
pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery staple"
RECIPIENTS = 30


class Journey:
    def __init__(self, page, base_url, shots, prefix=""):
        self.page = page
        self.base = base_url
        self.shots = shots
        self.prefix = prefix  # keeps each test's numbered screenshots apart
        self.step = itertools.count(1)

    def go(self, path):
        self.page.goto(self.base + path)

    def shoot(self, name, check_width=True):
        """Screenshot at both widths; at 390 px the page must not scroll sideways."""
        number = next(self.step)
        for width in (WIDE, NARROW):
            self.page.set_viewport_size({"width": width, "height": 900})
            self.page.screenshot(path=str(self.shots / f"{self.prefix}{number:02d}-{name}-{width}.png"),
                                 full_page=True)
            if width == NARROW and check_width:
                overflow = self.page.evaluate("document.documentElement.scrollWidth")
                assert overflow <= NARROW + 4, f"{name}: the page is {overflow}px wide at {NARROW}px"
        self.page.set_viewport_size({"width": WIDE, "height": 900})

    def message(self):
        return self.page.locator("ul.messagelist").inner_text()

    def click_action(self, name, confirm=False):
        self.page.locator(f"button.action-{name}").click()
        if confirm:
            self.page.locator("#confirm-button").click()

    def wait_for_status(self, label, timeout=90_000):
        self.page.locator("#dash-status", has_text=label).wait_for(timeout=timeout)


def recipients_csv(tmp_path):
    path = tmp_path / "people.csv"
    rows = ["Email,First Name,City"] + [f"person{i}@example.com,Name{i},City{i}" for i in range(RECIPIENTS)]
    path.write_text("\n".join(rows) + "\n")
    return path


def log_in(journey):
    journey.go("/admin/")
    journey.page.fill("#id_username", "staff")
    journey.page.fill("#id_password", PASSWORD)
    journey.page.click("input[type=submit]")
    journey.page.locator("#campaign-overview").wait_for()


def test_a_300000_row_upload_shows_its_progress_and_succeeds(page, live_server, screenshot_dir, start_worker,
                                                             settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    start_worker(["imports"], concurrency=1, MEDIA_ROOT=settings.MEDIA_ROOT)
    UserFactory(username="staff", is_superuser=True)
    campaign = CampaignFactory(name="Spring sale")
    rows = 300_000
    path = tmp_path / "crm-export.csv"
    path.write_text("Email,First Name,Last Name,City,Plan\n" + "".join(
        f"customer{i}@example.com,First{i},Last{i},City{i % 50},{('free', 'pro')[i % 2]}\n" for i in range(rows)))
    journey = Journey(page, live_server.url, screenshot_dir, prefix="big-import-")
    log_in(journey)

    journey.go(f"/admin/campaigns/campaign/{campaign.pk}/import/")
    page.set_input_files("#id_file", str(path))
    page.click("#recipient-import-form input[type=submit]")
    # The bar moves while the file is read (the import writes its progress at most every half second).
    page.wait_for_function("() => { const bar = document.getElementById('import-progress');"
                           " return bar !== null && bar.value > 0; }", timeout=60_000)
    assert re.search(r"of about 300,?000 rows read", page.locator("#import-rows").inner_text())
    journey.shoot("progress")
    page.locator("#import-summary").wait_for(timeout=180_000)
    summary = page.locator("#import-summary").inner_text()
    assert re.search(r"Rows in the file\s+300,000", summary) and re.search(r"Imported\s+300,000", summary)
    journey.shoot("finished")
    assert campaign.recipients.count() == rows


def test_staff_journey(page, live_server, screenshot_dir, start_worker, smtp_sink_server, no_sendgrid, settings,
                       tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    # A slow SMTP rate so a campaign is still sending when the pause button is pressed.
    start_worker(["scheduler", "senders", "imports"], concurrency=2, MEDIA_ROOT=settings.MEDIA_ROOT,
                 SMTP_RATE_LIMIT_PER_SEC="3")
    call_command("load_email_templates", verbosity=0)
    UserFactory(username="staff", is_superuser=True)
    journey = Journey(page, live_server.url, screenshot_dir)

    # Log in.
    journey.go("/admin/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    journey.shoot("login", check_width=False)
    page.click("input[type=submit]")
    page.locator("#campaign-overview").wait_for()
    journey.shoot("admin-index")

    # Create a campaign from a starter template: choosing it fills in the subject and the HTML.
    journey.go("/admin/campaigns/campaign/add/")
    page.select_option("#id_start_from", label="Newsletter")
    assert "The Acme Monthly" in page.input_value("#id_subject")
    assert "{{ unsubscribe_url }}" in page.input_value("#id_html_body")
    expect(page.frame_locator("#html-live-preview").locator("body")).to_contain_text("Acme")
    page.fill("#id_name", "October newsletter")
    page.fill("#id_from_email", "Acme <news@example.com>")
    journey.shoot("campaign-form-from-template")
    page.click("input[name=_continue]")
    assert "was added successfully" in journey.message()
    campaign = Campaign.objects.get(name="October newsletter")
    journey.shoot("campaign-page-draft")

    # Import a CSV from the campaign page, and watch its progress bar finish.
    page.click("text=Import recipients")
    page.set_input_files("#id_file", str(recipients_csv(tmp_path)))
    journey.shoot("import-upload")
    page.click("#recipient-import-form input[type=submit]")
    page.locator("#import-summary").wait_for(timeout=60_000)
    assert re.search(rf"Imported\s+{RECIPIENTS}", page.locator("#import-summary").inner_text())
    journey.shoot("import-finished")
    page.click("text=Back to the campaign")

    # Preview with a chosen recipient's data, in a sandboxed iframe.
    page.click("#preview-link")
    page.fill("#preview-recipient", "person3@example.com")
    page.click("#preview-recipient-form button")
    assert page.locator("#preview-html").get_attribute("sandbox") == ""
    expect(page.frame_locator("#preview-html").locator("body")).to_contain_text("Name3")
    assert "person3@example.com" in page.locator("#preview-email").inner_text()
    journey.shoot("preview")
    page.go_back()
    page.go_back()

    # Send a test email through the real SMTP path.
    journey.go(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    page.fill("#id_addresses", "me@example.com")
    page.click("#test-email-form button")
    assert "Test email sent to 1 of 1" in journey.message()
    assert any(m["X-Sink-Rcpt-To"] == "me@example.com" and "[TEST]" in m["Subject"]
               for m in smtp_sink_server.messages())
    journey.shoot("test-email-sent")

    # Send now (after a confirmation), and watch the dashboard reach completed without reloading by hand.
    journey.click_action("send_now")
    assert "cannot be recalled" in page.locator(".confirm-question").inner_text()
    journey.shoot("confirm-send-now", check_width=False)
    page.locator("#confirm-button").click()
    assert "Sending starts now" in journey.message()
    journey.wait_for_status("Completed")
    assert page.locator("#dash-sent").inner_text() == str(RECIPIENTS)
    assert page.locator("#dash-rate").inner_text() == "100.0%"
    assert "rate-good" in page.locator("#dash-rate").get_attribute("class")
    assert page.locator("#dash-chart svg rect.bar").count() >= 1
    journey.shoot("campaign-completed")

    # The list shows it with its badge, progress and colour-coded rate.
    journey.go("/admin/campaigns/campaign/")
    row = page.locator("#result_list tr", has_text="October newsletter")
    assert "Completed" in row.locator(".campaign-badge").inner_text()
    assert "rate-good" in row.locator(".delivery-rate").get_attribute("class")
    journey.shoot("campaign-list", check_width=False)

    # Duplicate it (recipients included), then send the copy and pause and resume it while it sends.
    journey.go(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    journey.click_action("duplicate")
    assert "Duplicated as draft" in journey.message()
    page.fill("#id_batch_size", "2")
    page.fill("#id_name", "October newsletter, again")
    page.click("input[name=_continue]")
    journey.click_action("send_now", confirm=True)
    page.locator("button.action-pause").click(timeout=60_000)
    assert "Paused" in journey.message()
    journey.wait_for_status("Paused", timeout=10_000)
    journey.shoot("campaign-paused")
    journey.click_action("resume")
    assert "Resumed" in journey.message()
    journey.wait_for_status("Completed")
    assert page.locator("#dash-sent").inner_text() == str(RECIPIENTS)
    journey.shoot("copy-completed")

    # Its delivery logs, filtered from the campaign page.
    page.click("#delivery-logs-link")
    page.locator("#filtered-campaign").wait_for()
    assert page.locator("#result_list tbody tr").count() == RECIPIENTS
    journey.shoot("delivery-logs", check_width=False)

    copy = Campaign.objects.get(name="October newsletter, again")
    messages = smtp_sink_server.messages()
    # Test sends aside, and the completion reports that go to the staff member who scheduled each campaign.
    delivered = [m["X-Sink-Rcpt-To"] for m in messages
                 if "[TEST]" not in m["Subject"] and m["X-Sink-Rcpt-To"] != "staff@example.com"]
    assert sorted(delivered) == sorted([f"person{i}@example.com" for i in range(RECIPIENTS)] * 2)
    assert any(m["X-Sink-Rcpt-To"] == "staff@example.com" for m in messages)  # the first campaign's report
    assert copy.sent_count == RECIPIENTS


def test_email_html_is_styled_in_its_own_frame_while_the_admin_page_keeps_the_strict_policy(
        page, live_server, screenshot_dir):
    """Issue 22 item 11: the email's inline styles apply inside the preview frames (their own URLs and
    policy), with no CSP violation reported on the strict admin pages (the page fixture fails on any)."""
    UserFactory(username="staff", is_superuser=True)
    campaign = CampaignFactory(name="Styled", html_body='<p id="hi" style="color: rgb(255, 0, 0)">Hi {{ first_name }}'
                                                         '</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>')
    journey = Journey(page, live_server.url, screenshot_dir, prefix="csp-")
    log_in(journey)
    journey.go(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    live = page.frame_locator("#html-live-preview").locator("#hi")
    expect(live).to_have_css("color", "rgb(255, 0, 0)")
    expect(live).to_have_text("Hi {{ first_name }}")  # merge tags as written while editing
    fill_html_body(page, '<p id="hi" style="color: rgb(0, 0, 255)">Bye</p>')
    expect(live).to_have_text("Bye")
    expect(live).to_have_css("color", "rgb(0, 0, 255)")
    journey.go(f"/admin/campaigns/campaign/{campaign.pk}/preview/")
    shown = page.frame_locator("#preview-html").locator("#hi")
    expect(shown).to_have_css("color", "rgb(255, 0, 0)")
    expect(shown).to_have_text("Hi Sam")
    # Refreshing the live preview added no history entries: Back goes to the change page, then the index.
    page.go_back()
    page.go_back()
    assert page.url == f"{live_server.url}/admin/"
