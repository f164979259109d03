""""Test connection" (campaigns/sending/account_check.py): its result on the account, in-process against local
servers (the worker side is covered by tests/admin/test_sending_accounts.py)."""

import pytest
from django.urls import reverse

from campaigns.models import SendingAccount
from campaigns.sending import account_check
from tests.support.factories import SendingAccountFactory

pytestmark = pytest.mark.django_db


def test_a_failed_check_is_the_accounts_last_error_with_its_time_until_one_works(
        admin_client, closed_port, smtp_sink_server):
    """Issue 25 item 14: a failed test left "Last error" at "-"."""
    account = SendingAccountFactory(name="relay-1", port=closed_port)

    assert account_check.run_check(account.pk) is False
    account.refresh_from_db()
    assert account.last_error.startswith(f"Test connection failed: relay-1: could not connect to 127.0.0.1:{closed_port}")
    assert account.last_error_at == account.last_check_at is not None
    page = admin_client.get(reverse("admin:campaigns_sendingaccount_change", args=[account.pk])).content.decode()
    assert "Test connection failed: relay-1: could not connect" in page

    SendingAccount.objects.filter(pk=account.pk).update(port=smtp_sink_server.port)
    assert account_check.run_check(account.pk) is True
    account.refresh_from_db()
    assert (account.last_error, account.last_error_at, account.last_check_worked) == ("", None, True)
    assert smtp_sink_server.count() == 0
