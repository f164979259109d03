"""Issue 23, item 1: the API's Swagger UI and Redoc pages work in a real browser, served from this site
under the Content-Security-Policy (the page fixture fails on any CSP refusal)."""

import pytest

from tests.support.factories import UserFactory

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery staple"


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
    page.goto(f"{live_server.url}/api/redoc/")
    page.wait_for_selector("text=Bulk mailer API")
    page.wait_for_selector("text=/api/v1/campaigns/{id}/stats/", state="attached")
    assert [url for url in requested if not url.startswith((live_server.url, "blob:", "data:"))] == []  # no CDN
