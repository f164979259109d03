"""Issue 25, items 2, 11 and 12 in a real browser: nothing overlaps or is cut off at 1280 px on the campaign
page, the campaign list and the delivery-log list; a form's errors are summed up at its top; refusals and a
reloaded confirmation are admin pages that say what happened. Screenshots go to test-artifacts/screenshots/."""

import datetime
import time

import pytest
from django.utils import timezone

from campaigns.models import Campaign, DeliveryLog
from tests.browser.conftest import NARROW, WIDE, fill_html_body
from tests.browser.test_campaign_journey import PASSWORD, Journey
from tests.support.factories import CampaignFactory, DeliveryLogFactory, RecipientFactory, UserFactory

expect = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed").expect
pytestmark = pytest.mark.slow
S = Campaign.Status
LONG_NAME = "Spring sale 2027 — loyal customers in Lisbon and Porto, second reminder with the new catalogue"
LONG_ERROR = ("550 5.1.1 <someone.with.a.rather.long.address@mail.example.org>: Recipient address rejected: "
              "User unknown in virtual mailbox table; see https://support.example.org/bounces/5.1.1")

# Every problem of layout on the page, as text: an object-tools button over the title or the panels below,
# a table cell whose content does not fit (cut off), a cell wrapped onto more than two lines, a table
# wider than the viewport or than the box that holds it.
LAYOUT_PROBLEMS = """() => {
  const problems = [];
  const overlap = (a, b) => a.width > 0 && b.width > 0 && a.left < b.right - 1 && b.left < a.right - 1
                            && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  const label = (el) => (el.id ? '#' + el.id : el.tagName.toLowerCase()) + ' "' + el.innerText.trim().slice(0, 40) + '"';
  // The boxes of an element's text, one per line (a heading's block is as wide as the page, its text is not).
  const textBoxes = (el) => {
    const boxes = [], walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (!node.textContent.trim()) continue;
      const range = document.createRange();
      range.selectNodeContents(node);
      boxes.push(...[...range.getClientRects()].filter(r => r.width > 0 && r.height > 0));
    }
    return boxes;
  };
  const tools = [...document.querySelectorAll('.object-tools a')];
  const headings = [...document.querySelectorAll('#content h1, #content > h2')];
  const panels = [...document.querySelectorAll('#content-main > *:not(.object-tools), .campaign-dashboard, '
                                               + '.campaign-actions, #changelist-filter, .messagelist')];
  for (const tool of tools) {
    const box = tool.getBoundingClientRect();
    for (const heading of headings)
      if (textBoxes(heading).some(text => overlap(box, text)))
        problems.push('object tool ' + label(tool) + ' overlaps the title ' + label(heading));
    for (const panel of panels)
      if (!panel.contains(tool) && overlap(box, panel.getBoundingClientRect()))
        problems.push('object tool ' + label(tool) + ' overlaps ' + label(panel));
  }
  const viewport = document.documentElement.clientWidth;
  for (const table of document.querySelectorAll('#result_list')) {
    const right = table.getBoundingClientRect().right, holder = table.parentElement;
    if (right > viewport + 1) problems.push('the table ends at ' + right + 'px, past the viewport (' + viewport + 'px)');
    if (holder.scrollWidth > holder.clientWidth + 1)
      problems.push('the table is ' + holder.scrollWidth + 'px wide in a box of ' + holder.clientWidth + 'px');
    for (const cell of table.querySelectorAll('th, td')) {
      if (cell.scrollWidth > cell.clientWidth + 1) problems.push('cut off: ' + label(cell));
      const lines = new Set(textBoxes(cell).map(r => Math.round(r.top)));
      if (lines.size > 2) problems.push(lines.size + ' lines: ' + label(cell));
    }
  }
  return problems;
}"""


def log_in(journey):
    journey.go("/admin/")
    journey.page.fill("#id_username", "staff")
    journey.page.fill("#id_password", PASSWORD)
    journey.page.click("input[type=submit]")
    journey.page.locator("#campaign-overview").wait_for()


def seen_first(page, locator):
    """LOCATOR is on the first screen at 1280 px and at phone width, without scrolling."""
    for width in (WIDE, NARROW):
        page.set_viewport_size({"width": width, "height": 800})
        page.evaluate("window.scrollTo(0, 0)")
        expect(locator).to_be_in_viewport()
    page.set_viewport_size({"width": WIDE, "height": 900})


def layout_problems(page):
    page.set_viewport_size({"width": WIDE, "height": 800})
    return page.evaluate(LAYOUT_PROBLEMS)


def sent_campaign():
    started = timezone.now() - datetime.timedelta(hours=2)
    campaign = CampaignFactory(name=LONG_NAME, status=S.COMPLETED, started_at=started,
                               completed_at=started + datetime.timedelta(minutes=20))
    for i in range(6):
        failed = i % 3 == 0
        DeliveryLogFactory(recipient=RecipientFactory(campaign=campaign, email=f"customer.number.{i}@lisbon.example.com"),
                           status=DeliveryLog.Status.FAILED if failed else DeliveryLog.Status.SENT,
                           provider="smtp", attempts=3 if failed else 1, sent_at=None if failed else started,
                           last_error=LONG_ERROR if failed else "")
    Campaign.recount_recipients([campaign.pk])
    Campaign.objects.filter(pk=campaign.pk).update(sent_count=4, failed_count=2)
    return campaign


def test_nothing_overlaps_or_is_cut_off_at_1280(page, live_server, screenshot_dir):
    UserFactory(username="staff", is_superuser=True)
    campaign = sent_campaign()
    draft = CampaignFactory(name=LONG_NAME.replace("Spring", "Summer"))
    RecipientFactory(campaign=draft)
    Campaign.recount_recipients([draft.pk])
    for status in (S.SCHEDULED, S.IN_PROGRESS, S.PAUSED, S.CANCELLED):
        CampaignFactory(name=f"{LONG_NAME} ({status})", status=status, scheduled_at=timezone.now())
    journey = Journey(page, live_server.url, screenshot_dir, prefix="layout-")
    log_in(journey)

    journey.go(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    expect(page.locator("#dash-status")).to_have_text("Completed")
    assert layout_problems(page) == [], "the sent campaign's page"
    journey.shoot("campaign-page")

    journey.go(f"/admin/campaigns/campaign/{draft.pk}/change/")
    expect(page.locator("#dash-status")).to_have_text("Draft")
    assert layout_problems(page) == [], "the draft's page"
    # One schedule control, and no Cancel next to Send now on a draft: there is nothing to cancel yet.
    expect(page.locator("#campaign-actions")).to_contain_text("Send now")
    expect(page.locator("button.action-cancel")).to_have_count(0)
    assert page.locator("input[name=when], input[name^=schedule_for]").count() == 1
    journey.shoot("draft-page")

    journey.go("/admin/campaigns/campaign/")
    expect(page.locator("#result_list")).to_contain_text("Summer sale 2027")
    assert layout_problems(page) == [], "the campaign list"
    journey.shoot("campaign-list")

    journey.go(f"/admin/campaigns/deliverylog/?campaign__id__exact={campaign.pk}")
    table = page.locator("#result_list")
    headers = [header.strip() for header in table.locator("thead th").all_text_contents()]
    assert {"Attempts", "Sent at", "Error"} <= set(headers), headers
    assert "Campaign" not in headers, "filtered to one campaign, it is said once, above the list"
    expect(page.locator("#filtered-campaign")).to_contain_text(LONG_NAME)
    assert layout_problems(page) == [], "the delivery-log list"
    journey.shoot("delivery-logs")

    # Unfiltered, the campaign column is back (the logs of every campaign are mixed).
    journey.go("/admin/campaigns/deliverylog/")
    assert "Campaign" in [header.strip() for header in page.locator("#result_list thead th").all_text_contents()]
    assert layout_problems(page) == [], "the delivery-log list of every campaign"


def test_errors_are_summed_up_at_the_top_and_refusals_are_pages_that_say_what_to_do(page, live_server,
                                                                                   screenshot_dir):
    UserFactory(username="staff", is_superuser=True)
    started = sent_campaign()
    draft = CampaignFactory(name="Autumn news")
    RecipientFactory(campaign=draft)
    Campaign.recount_recipients([draft.pk])
    journey = Journey(page, live_server.url, screenshot_dir, prefix="forms-")
    log_in(journey)

    # Item 2: a past "Send at" is summed up at the top, focused, and its link leads to the field. Django's own
    # change_form.js (loaded async) focuses an add form's first field: delayed here as on a loaded machine, it
    # must still not take the focus from the summary (CI saw it do so).
    page.route("**/admin/js/change_form*.js", lambda route: (time.sleep(1), route.continue_()))
    journey.go("/admin/campaigns/campaign/add/")
    page.fill("#id_name", "Winter sale")
    page.fill("#id_subject", "Hello")
    page.fill("#id_from_email", "news@example.com")
    fill_html_body(page, '<p>Hi</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>')
    page.fill("#id_schedule_for_0", "2020-01-01")
    page.fill("#id_schedule_for_1", "10:00")
    page.locator("input[name=_continue]").click()
    page.wait_for_load_state("load")  # every script has run, the async ones too
    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_have_attribute("role", "alert")
    expect(summary.locator("h2")).to_have_text("There is a problem")
    link = summary.get_by_role("link", name="Send at: Choose a time in the future, or use Send now.")
    expect(link).to_have_count(1)
    seen_first(page, summary)
    journey.shoot("error-summary")
    link.click()
    expect(page.locator("#id_schedule_for_0")).to_be_focused()
    page.unroute("**/admin/js/change_form*.js")
    assert not Campaign.objects.filter(name="Winter sale").exists()

    # Item 12: deleting a campaign that sent mail is an admin page saying why and what to do instead.
    journey.go(f"/admin/campaigns/campaign/{started.pk}/delete/")
    expect(page.locator("h1")).to_have_text("This campaign cannot be deleted")
    expect(page.locator("#not-deletable")).to_contain_text(
        "Nothing was deleted. “" + LONG_NAME + "”: it sent mail and its delivery logs are the record of who was "
        "mailed, so it is kept. To hide it from the list, archive it")
    seen_first(page, page.locator("#not-deletable"))
    journey.shoot("cannot-delete")
    page.locator("#back-to-campaign").click()
    expect(page.locator("#dash-status")).to_have_text("Completed")
    assert Campaign.objects.filter(pk=started.pk).exists()

    # Item 12: reloading the Send-now confirmation shows it again; nothing is sent until "Yes".
    journey.go(f"/admin/campaigns/campaign/{draft.pk}/change/")
    page.locator("button.action-send_now").click()
    expect(page.locator(".confirm-question")).to_contain_text("Start sending this campaign")
    page.reload()
    expect(page.locator(".confirm-question")).to_contain_text("Start sending this campaign")
    expect(page.locator("#content-main")).to_contain_text("1 person will be mailed")
    seen_first(page, page.locator("#confirm-button"))
    journey.shoot("send-now-reloaded")
    page.locator("a.cancel-link").click()
    expect(page.locator("#dash-status")).to_have_text("Draft")
    assert Campaign.objects.get(pk=draft.pk).status == S.DRAFT
