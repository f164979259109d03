"""Issue 23, item 2: `manage.py api_token create USERNAME [--name N] [--expires DAYS]` prints the token as
its last line; `list` shows tokens without them; `revoke` ends one."""

import io

import pytest
from django.core.management import CommandError, call_command

from campaigns.models import ApiToken
from tests.api.conftest import ApiClient
from tests.support.factories import UserFactory


def run(*args):
    out = io.StringIO()
    call_command("api_token", *args, stdout=out)
    return out.getvalue()


def test_create_list_revoke(db):
    UserFactory(username="alice", is_superuser=True)
    token = run("create", "alice", "--name", "CRM sync", "--expires", "90").strip().splitlines()[-1]
    assert token.startswith("mlr_")
    assert ApiClient(token).get("/api/v1/campaigns/").status_code == 200
    row = ApiToken.objects.get()
    listing = run("list")
    assert "alice" in listing and "CRM sync" in listing and "active" in listing and token not in listing
    run("revoke", str(row.pk))
    assert "revoked" in run("list", "alice")
    assert ApiClient(token).get("/api/v1/campaigns/").status_code == 401


def test_bad_input_is_a_clear_message_and_makes_nothing(db):
    UserFactory(username="bob", is_staff=False)
    with pytest.raises(CommandError, match="No user named"):
        run("create", "nobody")
    with pytest.raises(CommandError, match="not an active staff user"):
        run("create", "bob")
    UserFactory(username="carol")
    with pytest.raises(CommandError, match="positive number of days"):
        run("create", "carol", "--expires", "0")
    with pytest.raises(CommandError, match="No active token"):
        run("revoke", "999")
    assert not ApiToken.objects.exists()
