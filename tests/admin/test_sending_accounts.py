"""Sending accounts and pools in the admin: the secret never comes back, "Test connection" against local servers."""

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse

from campaigns.deliverability import dkim
from campaigns.models import SendingAccount
from tests.conftest import SINK_PASSWORD
from tests.support.factories import SendingAccountFactory, UserFactory, pool_of

pytestmark = pytest.mark.django_db
SECRET = "Zq9-very-secret-app-password"


def account_form(**fields):
    data = {"name": "gmail-1", "kind": "smtp", "host": "127.0.0.1", "port": "", "security": "none",
            "username": "ann@example.com", "new_secret": "", "api_host": "https://api.sendgrid.com",
            "from_domains": "", "per_second": "0", "per_minute": "0", "per_hour": "0", "per_day": "0",
            "day_window": "rolling", "weight": "1", "enabled": "on", "disabled_reason": ""}
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def change_url(account):
    return reverse("admin:campaigns_sendingaccount_change", args=[account.pk])


def test_the_secret_is_saved_encrypted_and_appears_in_no_page(staff_client):
    response = staff_client.post(reverse("admin:campaigns_sendingaccount_add"),
                                 account_form(new_secret=SECRET, per_day="100"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    account = SendingAccount.objects.get(name="gmail-1")
    assert account.secret == SECRET and account.per_day == 100

    pages = [staff_client.get(change_url(account)), staff_client.get(reverse("admin:campaigns_sendingaccount_changelist")),
             staff_client.get(reverse("admin:campaigns_sendingpool_add"))]
    for page in pages:
        assert page.status_code == 200
        assert SECRET not in page.content.decode()
    assert "A secret is stored" in pages[0].content.decode()


def test_leaving_the_secret_empty_keeps_it_and_typing_one_replaces_it(staff_client):
    account = SendingAccountFactory(name="gmail-1", secret=SECRET, username="ann@example.com")

    assert staff_client.post(change_url(account), account_form(per_hour="20")).status_code == 302
    account.refresh_from_db()
    assert account.secret == SECRET and account.per_hour == 20

    assert staff_client.post(change_url(account), account_form(new_secret="new-one")).status_code == 302
    account.refresh_from_db()
    assert account.secret == "new-one"


def test_a_sendgrid_account_without_a_key_is_refused_with_a_message(staff_client):
    response = staff_client.post(reverse("admin:campaigns_sendingaccount_add"), account_form(kind="sendgrid"))
    assert response.status_code == 200
    assert "A SendGrid account needs its API key." in response.content.decode()
    assert not SendingAccount.objects.exists()


def test_switching_a_disabled_account_back_on_clears_its_reason(staff_client):
    account = SendingAccountFactory(name="gmail-1", enabled=False, disabled_reason="authentication refused")
    assert staff_client.post(change_url(account), account_form(disabled_reason=account.disabled_reason)).status_code == 302
    account.refresh_from_db()
    assert account.enabled and account.disabled_reason == ""


def run_test_connection(client, *accounts):
    response = client.post(reverse("admin:campaigns_sendingaccount_changelist"),
                           {"action": "test_connection", "_selected_action": [a.pk for a in accounts]}, follow=True)
    assert response.status_code == 200
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


def test_test_connection_logs_in_to_the_smtp_server_and_sends_nothing(staff_client, password_sink):
    account = SendingAccountFactory(name="relay", port=password_sink.port, username="ann", secret=SINK_PASSWORD)

    [(level, message)] = run_test_connection(staff_client, account)

    assert level == "success"
    assert "connected, EHLO (no TLS), AUTH as ann, QUIT. Nothing was sent." in message
    assert SINK_PASSWORD not in message
    assert password_sink.count() == 0


def test_test_connection_reports_a_refused_password(staff_client, password_sink):
    account = SendingAccountFactory(name="relay", port=password_sink.port, username="ann", secret="wrong-password")

    [(level, message)] = run_test_connection(staff_client, account)

    assert level == "error"
    assert "refused the user name and password: 535" in message and "wrong-password" not in message


def test_test_connection_reports_a_server_without_starttls(staff_client, smtp_sink_server):
    account = SendingAccountFactory(name="relay", port=smtp_sink_server.port, security=SendingAccount.Security.STARTTLS)

    [(level, message)] = run_test_connection(staff_client, account)

    assert level == "error" and "STARTTLS" in message


def test_test_connection_sends_a_sandbox_mode_request_to_sendgrid(staff_client, fake_sendgrid):
    good = SendingAccountFactory(name="sg", kind="sendgrid", api_host=fake_sendgrid.url, secret=fake_sendgrid.api_key,
                                 from_domains="acme.test")
    bad = SendingAccountFactory(name="sg-old", kind="sendgrid", api_host=fake_sendgrid.url, secret="SG.revoked")

    messages = dict((text.split(":")[0], (level, text)) for level, text in run_test_connection(staff_client, good, bad))

    assert messages["sg"][0] == "success" and "sandbox-mode send answered 200" in messages["sg"][1]
    assert messages["sg-old"][0] == "error" and "answered 401" in messages["sg-old"][1]
    assert fake_sendgrid.records() == []  # sandbox mode delivers nothing
    assert "SG.revoked" not in messages["sg-old"][1]


def test_a_pool_lists_its_accounts(staff_client):
    pool = pool_of(SendingAccountFactory(name="a"), SendingAccountFactory(name="b", enabled=False), name="gmail")
    page = staff_client.get(reverse("admin:campaigns_sendingpool_changelist")).content.decode()
    assert "gmail" in page and "a, b (disabled)" in page
    assert staff_client.get(reverse("admin:campaigns_sendingpool_change", args=[pool.pk])).status_code == 200


def test_the_account_page_shows_sends_this_hour_today_and_a_chart_per_hour(staff_client):
    from django.utils import timezone

    from campaigns.sending.routing import record_usage
    from tests.support.factories import CampaignFactory

    account = SendingAccountFactory(name="gmail-1", last_error="SMTP server refused our credentials")
    campaign = CampaignFactory()
    record_usage(account.pk, campaign.pk, 7)
    record_usage(account.pk, campaign.pk, 5)

    page = staff_client.get(change_url(account)).content.decode()
    assert "Sent this hour: <strong>12</strong>" in page
    assert f"{timezone.localtime():%H}:00: 12 sent" in page  # the chart's bar for this hour
    assert "refused our credentials" in page
    listing = staff_client.get(reverse("admin:campaigns_sendingaccount_changelist")).content.decode()
    assert '<td class="field-sent_this_hour">12</td>' in listing


def test_a_viewer_sees_an_account_but_cannot_change_it_and_never_sees_its_secret(client, db):
    from django.core.management import call_command
    from django.contrib.auth.models import Group

    from tests.support.factories import UserFactory

    call_command("create_staff_groups", verbosity=0)
    viewer = UserFactory()
    viewer.groups.add(Group.objects.get(name="Viewer"))
    client.force_login(viewer)
    account = SendingAccountFactory(name="gmail-1", secret=SECRET)

    page = client.get(change_url(account))
    assert page.status_code == 200 and "gmail-1" in page.content.decode() and SECRET not in page.content.decode()
    assert client.post(change_url(account), account_form(new_secret="mine")).status_code == 403
    assert client.get(reverse("admin:campaigns_sendingaccount_add")).status_code == 403
    account.refresh_from_db()
    assert account.secret == SECRET


def dkim_key_url(account):
    return reverse("admin:campaigns_sendingaccount_dkim_key", args=[account.pk])


def test_generate_key_stores_a_key_and_the_page_shows_the_record_to_publish_never_the_key(staff_client):
    account = SendingAccountFactory(name="relay", dkim_domain="example.com", dkim_selector="mailer1")
    assert 'id="generate-dkim-key"' in staff_client.get(change_url(account)).content.decode()
    assert 'id="confirm-generate"' in staff_client.get(dkim_key_url(account)).content.decode()

    response = staff_client.post(dkim_key_url(account), {}, follow=True)

    account.refresh_from_db()
    assert account.dkim_private_key.startswith("-----BEGIN PRIVATE KEY-----")
    page = response.content.decode()
    record = dkim.record_value(account.dkim_private_key)
    assert f"mailer1._domainkey.example.com. TXT &quot;{record}&quot;" in page
    key_body = account.dkim_private_key.splitlines()[1]
    assert key_body not in page and key_body not in staff_client.get(change_url(account)).content.decode()


def test_generate_key_without_a_selector_says_what_to_set(staff_client):
    account = SendingAccountFactory(name="relay", dkim_domain="example.com")
    page = staff_client.post(dkim_key_url(account), {}, follow=True).content.decode()
    assert "Set the DKIM domain and selector of relay first" in page
    account.refresh_from_db()
    assert not account.dkim_private_key


def test_a_viewer_cannot_generate_a_key(client, db):
    call_command("create_staff_groups", verbosity=0)
    viewer = UserFactory()
    viewer.groups.add(Group.objects.get(name="Viewer"))
    client.force_login(viewer)
    account = SendingAccountFactory(name="relay", dkim_domain="example.com", dkim_selector="mailer1")

    assert client.get(dkim_key_url(account)).status_code == 403
    assert client.post(dkim_key_url(account), {}).status_code == 403
    account.refresh_from_db()
    assert not account.dkim_private_key


def test_the_dns_page_shows_each_check_the_record_to_publish_and_the_bulk_sender_checklist(staff_client, dns_server):
    account = SendingAccountFactory(name="relay", host="203.0.113.25", from_domains="example.com",
                                    dkim_domain="example.com", dkim_selector="mailer1")
    dkim.generate_key(account)
    dns_server.txt("example.com", "v=spf1 ip4:203.0.113.25 -all")
    dns_server.txt("mailer1._domainkey.example.com", dkim.record_value(account.dkim_private_key))

    page = staff_client.get(reverse("admin:campaigns_sendingaccount_dns", args=[account.pk])).content.decode()

    assert 'data-check="SPF" data-status="pass"' in page and 'data-check="DKIM" data-status="pass"' in page
    assert 'data-check="DMARC" data-status="warning"' in page
    assert "_dmarc.example.com. TXT &quot;v=DMARC1; p=none;" in page
    for rule, holds in (("SPF", "yes"), ("DKIM", "yes"), ("DMARC aligned", "no"), ("One-click unsubscribe", "yes"),
                        ("Complaint rate under 0.3 %", "unknown")):
        assert f"data-rule='{rule}' data-holds='{holds}'" in page or \
            f'data-rule="{rule}" data-holds="{holds}"' in page, rule


def test_the_account_page_lists_the_rules_and_looks_nothing_up(staff_client):
    account = SendingAccountFactory(name="relay", from_domains="example.com")
    page = staff_client.get(change_url(account)).content.decode()
    assert "data-rule='SPF' data-holds='unknown'" in page and "not checked: Check DNS" in page
    assert "data-rule='One-click unsubscribe' data-holds='yes'" in page
    assert reverse("admin:campaigns_sendingaccount_dns", args=[account.pk]) in page
