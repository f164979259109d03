"""Staff set up two sending accounts and a pool in a real browser, test a connection, and send a campaign
through the pool; real Celery workers, two SMTP sinks as the accounts' servers (issue 15)."""

import socket

import pytest

from campaigns.models import Campaign, SendingAccount, SendingPool
from tests.browser.conftest import fill_html_body
from tests.browser.test_campaign_journey import Journey, log_in
from tests.conftest import SINK_PASSWORD
from tests.sending.conftest import wait_until
from tests.support.factories import RecipientFactory, UserFactory

pytestmark = pytest.mark.slow
RECIPIENTS = 40


def add_account(journey, name, port, per_day, password=""):
    page = journey.page
    journey.go("/admin/campaigns/sendingaccount/add/")
    page.fill("#id_name", name)
    page.select_option("#id_kind", "smtp")
    page.fill("#id_host", "127.0.0.1")
    page.fill("#id_port", str(port))
    page.select_option("#id_security", "none")
    if password:
        page.fill("#id_username", "staff@example.com")
        page.fill("#id_new_secret", password)
    page.fill("#id_per_day", str(per_day))
    page.click("input[name=_save]")
    assert "was added successfully" in journey.message()


def test_staff_create_accounts_and_a_pool_and_send_a_campaign_through_them(
        page, live_server, screenshot_dir, start_worker, password_sink, second_sink, no_sendgrid):
    start_worker(["scheduler", "senders"], concurrency=2)
    UserFactory(username="staff", is_superuser=True)
    journey = Journey(page, live_server.url, screenshot_dir, prefix="accounts-")
    log_in(journey)

    add_account(journey, "workspace-1", password_sink.port, per_day=25, password=SINK_PASSWORD)
    add_account(journey, "relay-2", second_sink.port, per_day=15)
    journey.shoot("accounts")
    assert SINK_PASSWORD not in page.content()

    # Test the connection of the first one: the scheduler worker logs in and sends nothing; the result is on
    # the account's page.
    page.locator("#result_list tr", has_text="workspace-1").locator("input.action-select").check()
    page.select_option("select[name=action]", "test_connection")
    page.click("button[name=index]")
    assert "Connection check queued for workspace-1" in journey.message()
    account = SendingAccount.objects.get(name="workspace-1")
    wait_until(lambda: SendingAccount.objects.filter(pk=account.pk, last_check_at__isnull=False).exists(), timeout=60)
    journey.go(f"/admin/campaigns/sendingaccount/{account.pk}/change/")
    assert "AUTH as staff@example.com, QUIT. Nothing was sent." in page.locator(".field-last_check").inner_text()
    assert password_sink.count() == 0
    journey.shoot("test-connection")

    # A pool of both.
    journey.go("/admin/campaigns/sendingpool/add/")
    page.fill("#id_name", "Newsletter pool")
    for name in ("workspace-1", "relay-2"):
        page.select_option("#id_accounts_from", label=name)
        page.click("#id_accounts_add")
    journey.shoot("pool-form")
    page.click("input[name=_save]")
    assert "was added successfully" in journey.message()
    assert set(SendingPool.objects.get().accounts.values_list("name", flat=True)) == {"workspace-1", "relay-2"}

    # A campaign that sends through it.
    journey.go("/admin/campaigns/campaign/add/")
    page.fill("#id_name", "Pool campaign")
    page.fill("#id_subject", "Hello {{ first_name }}")
    page.fill("#id_from_email", "Acme <news@example.com>")
    fill_html_body(page, '<p>Hi {{ first_name }}</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>')
    page.fill("#id_batch_size", "10")
    page.select_option("#id_pool", label="Newsletter pool")
    page.click("input[name=_continue]")
    assert "was added successfully" in journey.message()
    campaign = Campaign.objects.get(name="Pool campaign")
    RecipientFactory.create_batch(RECIPIENTS, campaign=campaign)
    page.reload()

    journey.click_action("send_now", confirm=True)
    journey.wait_for_status("Completed")
    assert page.locator("#dash-sent").inner_text() == str(RECIPIENTS)
    accounts = page.locator("#dash-accounts").inner_text()
    assert "workspace-1\t25" in accounts and "relay-2\t15" in accounts
    assert page.locator("#dash-pool").inner_text() == "Newsletter pool (relay-2, workspace-1)"
    journey.shoot("campaign-completed")
    assert (password_sink.count(), second_sink.count()) == (25, 15)

    # The account's page: what it sent, and a chart per hour.
    account = SendingAccount.objects.get(name="workspace-1")
    journey.go(f"/admin/campaigns/sendingaccount/{account.pk}/change/")
    assert "Sent this hour: 25" in page.locator(".field-usage_panel").inner_text()
    assert page.locator(".field-usage_panel svg rect.bar").count() >= 1
    assert SINK_PASSWORD not in page.content()
    journey.shoot("account-usage")


def test_the_account_form_follows_its_kind_and_a_failed_test_is_the_last_error(page, live_server, screenshot_dir):
    """Issue 25 item 14, at 1280 and 390 px: an SMTP account showed SendGrid's API host and an editable
    "Disabled reason" on Add; a failed Test connection left "Last error" at "-"."""
    from campaigns.sending import account_check

    UserFactory(username="staff", is_superuser=True)
    journey = Journey(page, live_server.url, screenshot_dir, prefix="account-form-")
    log_in(journey)

    def shown(name):
        return page.locator(f".form-row.field-{name}").is_visible()

    journey.go("/admin/campaigns/sendingaccount/add/")
    assert page.locator("#id_kind").input_value() == "smtp"
    assert all(shown(name) for name in ("host", "port", "security", "username", "new_secret", "bounce_mailbox",
                                        "dkim_domain"))
    assert not shown("api_host") and page.locator("label[for=id_new_secret]").inner_text() == "Password:"
    assert "Disabled reason" not in page.locator("#content-main").inner_text()
    journey.shoot("add-smtp")

    page.select_option("#id_kind", "sendgrid")
    assert shown("api_host") and shown("new_secret") and shown("per_day")
    assert not any(shown(name) for name in ("host", "port", "security", "username", "bounce_mailbox", "dkim_domain"))
    assert page.locator("label[for=id_new_secret]").inner_text() == "API key:"
    assert not page.locator("fieldset", has_text="Bounces").is_visible()
    journey.shoot("add-sendgrid")

    # An SMTP account on a port nothing listens on: its page's Test connection button, then the check runs
    # (here in-process, as the scheduler worker would: tests/admin/test_sending_accounts.py runs it there).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    account = SendingAccount.objects.create(name="relay-1", kind="smtp", host="127.0.0.1", port=port,
                                            security="none", enabled=False,
                                            disabled_reason="Disabled 2026-12-01 10:00 UTC: authentication refused.")
    journey.go(f"/admin/campaigns/sendingaccount/{account.pk}/change/")
    assert "Disabled 2026-12-01 10:00 UTC: authentication refused." in page.locator(".field-disabled_reason").inner_text()
    assert page.locator("textarea[name=disabled_reason]").count() == 0
    page.locator("#test-connection-form button").click()
    assert "Connection check queued for relay-1" in journey.message()
    assert account_check.run_check(account.pk) is False
    page.reload()
    last_error = page.locator(".field-last_error").inner_text()
    assert f"Test connection failed: relay-1: could not connect to 127.0.0.1:{port}" in last_error
    account.refresh_from_db()
    assert page.locator(".field-last_error_at .readonly").inner_text() != "-" and account.last_error_at is not None
    assert "failed" in page.locator(".field-last_check").inner_text()
    journey.shoot("test-connection-failed")
