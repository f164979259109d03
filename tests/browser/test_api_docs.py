"""Issue 23, item 1: the API's Swagger UI and Redoc pages work in a real browser, served from this site
under the Content-Security-Policy (the page fixture fails on any CSP refusal)."""

import pytest

from tests.support.factories import UserFactory

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery staple"
# Redoc's bundle always shows Redocly's logo from their CDN (hard-coded; it hides it when it cannot load):
# the CSP refuses it, so nothing is fetched from there, and the page works without it.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def test_swagger_ui_and_redoc_render_the_schema(page, live_server):
    UserFactory(username="staff", is_superuser=True, password=PASSWORD)
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector("text=/api/v1/campaigns/{id}/send-now/")
    assert [url for url in requested if not url.startswith((live_server.url, "data:"))] == []  # no CDN

    redoc = page.context.new_page()  # its one expected refusal is checked here, not by the page fixture
    refused, fetched = [], []
    redoc.on("console", lambda message: refused.append(message.text)
             if "Content Security Policy" in message.text else None)
    redoc.on("requestfinished", lambda request: fetched.append(request.url))
    redoc.goto(f"{live_server.url}/api/redoc/")
    redoc.wait_for_selector("text=Bulk mailer API")
    redoc.wait_for_selector("text=/api/v1/campaigns/{id}/stats/", state="attached")
    assert all(REDOC_LOGO in text for text in refused), refused
    assert [url for url in fetched if not url.startswith((live_server.url, "blob:", "data:"))] == []
