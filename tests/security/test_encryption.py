"""Sending accounts' secrets at rest: encrypted with Fernet under FIELD_ENCRYPTION_KEY, rotated with MultiFernet."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection

from campaigns.models import SendingAccount
from campaigns.security import encryption
from tests.support.factories import SendingAccountFactory

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def stored_secret(account):
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM campaigns_sendingaccount WHERE id = %s", [account.pk])
        return cursor.fetchone()[0]


@pytest.fixture
def key(settings):
    settings.FIELD_ENCRYPTION_KEY = [Fernet.generate_key().decode()]
    return settings.FIELD_ENCRYPTION_KEY[0]


def test_the_database_holds_a_token_and_the_model_the_password(key):
    account = SendingAccountFactory(secret="app password 1234")

    assert "app password" not in stored_secret(account)
    assert stored_secret(account).startswith("fernet:")
    assert SendingAccount.objects.get(pk=account.pk).secret == "app password 1234"
    assert "app password" not in repr(SendingAccount.objects.get(pk=account.pk).secret)


def test_a_new_key_put_first_still_reads_the_old_one_and_reencrypting_moves_every_secret_to_it(settings, key):
    account = SendingAccountFactory(secret="s3cret")
    new = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEY = [new, key]
    assert SendingAccount.objects.get(pk=account.pk).secret == "s3cret"

    call_command("reencrypt_secrets")

    settings.FIELD_ENCRYPTION_KEY = [new]  # the old key dropped
    assert SendingAccount.objects.get(pk=account.pk).secret == "s3cret"


def test_reencrypting_moves_the_bounce_mailbox_password_too(settings, key):
    account = SendingAccountFactory(bounce_password="mailbox pass")  # no secret at all
    new = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEY = [new, key]

    call_command("reencrypt_secrets")

    settings.FIELD_ENCRYPTION_KEY = [new]
    assert SendingAccount.objects.get(pk=account.pk).bounce_password == "mailbox pass"


def test_reencrypting_moves_the_dkim_private_key_too(settings, key):
    account = SendingAccountFactory(dkim_private_key="-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    new = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEY = [new, key]

    call_command("reencrypt_secrets")

    settings.FIELD_ENCRYPTION_KEY = [new]  # the old key dropped
    assert SendingAccount.objects.get(pk=account.pk).dkim_private_key.startswith("-----BEGIN PRIVATE KEY-----")


def test_a_secret_no_key_decrypts_loads_empty_and_is_kept_as_stored(settings, key):
    account = SendingAccountFactory(secret="s3cret")
    before = stored_secret(account)
    settings.FIELD_ENCRYPTION_KEY = [Fernet.generate_key().decode()]

    loaded = SendingAccount.objects.get(pk=account.pk)
    assert loaded.secret == "" and loaded.secret.undecryptable
    loaded.save()

    assert stored_secret(account) == before


def test_production_without_a_key_refuses_to_store_a_secret_and_names_the_variable(settings):
    settings.DEBUG, settings.FIELD_ENCRYPTION_KEY = False, []
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEY"):
        SendingAccountFactory(secret="s3cret")


def test_a_malformed_key_is_refused_with_how_to_make_one(settings):
    settings.FIELD_ENCRYPTION_KEY = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured, match="Fernet.generate_key"):
        encryption.encrypt("x")


def test_development_without_a_key_derives_one_from_secret_key():
    probe = ("import django; django.setup(); from campaigns.security import encryption; "
             "print(encryption.decrypt(encryption.encrypt('s3cret')))")
    env = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "mailer_project.settings", "DEBUG": "True"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "s3cret"
