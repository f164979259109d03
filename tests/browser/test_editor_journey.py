"""Issue 25, items 9 and 10 in a real browser, at 1280 and 390 px: the HTML body in the code editor
(highlighting, line numbers, folding) beside the live preview, a merge tag picked into it, a tag the
recipients do not have yet saved with a warning and refused by Send now; then a Markdown body. The page's
strict Content-Security-Policy stays on (the `page` fixture fails on any violation). Screenshots go to
test-artifacts/screenshots/editor-*."""

import pytest

from campaigns.message.starter_templates import read_starter
from campaigns.models import Campaign
from tests.admin.conftest import add_recipients
from tests.browser.conftest import NARROW, WIDE
from tests.browser.test_campaign_journey import PASSWORD, Journey
from tests.support.factories import CampaignFactory, UserFactory

expect = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed").expect
pytestmark = pytest.mark.slow


def test_the_html_editor_the_merge_tag_picker_the_preview_and_a_markdown_body(page, live_server, screenshot_dir):
    UserFactory(username="staff", is_superuser=True, password=PASSWORD)
    campaign = CampaignFactory(html_body=read_starter("newsletter")[1])  # 9.6 KB of table markup
    add_recipients(campaign, 3)  # their column "city" is a merge tag
    journey = Journey(page, live_server.url, screenshot_dir, prefix="editor-")
    journey.go("/admin/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")

    journey.go(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    editor = page.locator(".field-html_body .cm-editor")
    expect(editor.locator(".cm-lineNumbers")).to_be_visible()
    expect(editor.locator(".cm-foldGutter")).to_be_visible()
    expect(page.locator("#id_html_body")).to_be_hidden()  # the form field, kept in step with the editor
    expect(editor.locator(".cm-content")).to_contain_text("<!DOCTYPE html>")
    assert editor.locator(".cm-content span").count() > 20  # tags and attributes highlighted
    expect(page.frame_locator("#html-live-preview").locator("body")).to_contain_text("The Acme Monthly")
    page.locator("fieldset:has(#id_html_body)").screenshot(path=str(screenshot_dir / "editor-00-content-1280.png"))

    # Typed at the end, then a column picked from the merge-tag picker goes in at the cursor.
    editor.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.type("<p>Weather in ")
    picker = page.locator("#merge-tag-picker")
    assert picker.locator("optgroup[label='Columns of the recipients'] option").all_inner_texts() == ["{{ city }}"]
    assert "{{ unsubscribe_url }}" in picker.locator("optgroup[label='Built-in'] option").all_inner_texts()
    picker.select_option("city")
    page.keyboard.type(" and {{ country }}")  # the editor closed the <p> itself
    preview = page.frame_locator("#html-live-preview")
    expect(preview.locator("body")).to_contain_text("Weather in {{ city }} and {{ country }}")
    page.locator(".preview-width", has_text="Phone").click()
    expect(page.locator(".preview-width", has_text="Phone")).to_have_attribute("aria-pressed", "true")
    phone_width = page.locator("#html-live-preview").bounding_box()["width"]
    assert phone_width == pytest.approx(375, abs=2)
    journey.shoot("html-editor")
    for width in (WIDE, NARROW):  # beside the editor when wide, under it on a phone
        page.set_viewport_size({"width": width, "height": 900})
        page.locator(".campaign-body-row").screenshot(path=str(screenshot_dir / f"editor-01-html-body-row-{width}.png"))
        editor_box = editor.bounding_box()
        frame_box = page.locator("#html-live-preview").bounding_box()
        beside = frame_box["x"] >= editor_box["x"] + editor_box["width"] and frame_box["y"] < editor_box["y"] + 100
        assert beside == (width == WIDE), (width, editor_box, frame_box)
    page.set_viewport_size({"width": WIDE, "height": 900})

    # Saved with {{ country }}, which no recipient has yet: a warning names it; Send now refuses it.
    page.click("input[name=_continue]")
    message = journey.message()
    assert "was changed successfully" in message
    assert ("{{ country }} is not a merge tag of this campaign yet: no recipient has that column. Import the file "
            "that has it (or remove it) before sending") in message
    campaign.refresh_from_db()
    assert campaign.html_body.endswith("</html>\r\n<p>Weather in {{ city }} and {{ country }}</p>")
    journey.shoot("unknown-tag-saved")
    for _ in range(2):  # new A/B variants get the next letters, and subject fields as wide as the campaign's
        page.locator("#variants-group .add-row a").click()
    assert [page.input_value(f"#id_variants-{i}-letter") for i in range(2)] == ["A", "B"]
    assert "vLargeTextField" in page.get_attribute("#id_variants-1-subject", "class")
    page.locator("#variants-group .inline-deletelink").nth(1).click()
    page.locator("#variants-group .inline-deletelink").nth(0).click()
    journey.click_action("send_now", confirm=True)
    assert "cannot be sent yet: HTML body: Unknown merge tag {{ country }}" in journey.message()
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT

    # A Markdown body instead: written in place of the editor, previewed and saved as the HTML it makes.
    page.check("#id_body_format_1")
    expect(editor).to_be_hidden()
    markdown = page.locator("#id_markdown_body")
    markdown.fill("# Hello {{ first_name }}\n\n**Sale** in ")
    picker.select_option("city")
    markdown.press("End")
    markdown.type("\n\n[Unsubscribe]({{ unsubscribe_url }})")
    expect(preview.locator("h1")).to_have_text("Hello {{ first_name }}")
    expect(preview.locator("strong")).to_have_text("Sale")
    journey.shoot("markdown-body")
    page.click("input[name=_continue]")
    assert "was changed successfully" in journey.message()
    campaign.refresh_from_db()
    assert campaign.body_format == "markdown"
    assert "<p><strong>Sale</strong> in {{ city }}</p>" in campaign.html_body
    assert '<a href="{{ unsubscribe_url }}">Unsubscribe</a>' in campaign.html_body
