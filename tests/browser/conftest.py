"""Headless Debian Chromium driven by Playwright, against pytest-django's live server."""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDE, NARROW = 1280, 390


@pytest.fixture
def page(live_server, transactional_db, monkeypatch):
    """A fresh headless Chromium page, started after the test database and the live server exist."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"No Chromium at {CHROMIUM}: `make test` installs Debian's chromium when it runs as root "
                    "(scripts/ensure_chromium.sh); set CHROMIUM_PATH to use another.")
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls stay synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": WIDE, "height": 900})
        context.set_default_timeout(20_000)
        # expect() assertions wait for the page too: as long as actions do (its default of 5 s was too
        # short on a loaded machine). A bounded wait for the page to show something, not a timing check.
        sync_api.expect.set_options(timeout=20_000)
        page = context.new_page()
        # Anything the Content-Security-Policy refuses (a script, a style, an image) fails the test:
        # Chromium reports each refusal on the console.
        violations = []
        page.on("console", lambda message: violations.append(message.text)
                if "Content Security Policy" in message.text else None)
        yield page
        context.close()
        browser.close()
        assert violations == [], violations


@pytest.fixture(scope="session")
def screenshot_dir():
    # Emptied at the start of a one-process run; a parallel run's processes share it (`make test` empties
    # it once, before them, and sets TEST_SCREENSHOTS_KEEP).
    if not (os.environ.get("TEST_SCREENSHOTS_KEEP") or os.environ.get("PYTEST_XDIST_WORKER")):
        shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def fill_html_body(page, html):
    """Replace the campaign form's HTML body through its code editor (the textarea under it is hidden, and kept
    in step with the editor). Inserted as one text input, so the editor's tag closing adds nothing."""
    page.locator(".field-html_body .cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(html)
    page.wait_for_function("([id, value]) => document.getElementById(id).value === value", arg=["id_html_body", html])
