"""Secrets at rest: the sending accounts' passwords and API keys, encrypted with Fernet (from
`cryptography`) under FIELD_ENCRYPTION_KEY. MultiFernet takes a list of keys: the first encrypts,
every one decrypts, so a key rotates without losing what the old one encrypted
(`campaigns.security.key_rotation`).

`EncryptedTextField` stores the token; Python code sees the plain text. Nothing here logs a secret,
and an undecryptable value raises an error that names the account's field, never the value.
"""

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

PREFIX = "fernet:"  # what a stored, encrypted value starts with


class SecretUnavailable(Exception):
    """A stored secret none of the configured keys decrypts (a key was dropped too early)."""


def keys():
    """The configured keys, newest first (development derives one from SECRET_KEY: settings.py)."""
    return list(settings.FIELD_ENCRYPTION_KEY)


def is_configured():
    return bool(keys())


def _fernet():
    configured = keys()
    if not configured:
        raise ImproperlyConfigured(
            "Set FIELD_ENCRYPTION_KEY to store a sending account's password or API key: it encrypts them in the "
            "database. See .env.example.")
    try:
        return MultiFernet([Fernet(key) for key in configured])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY holds a value that is not a Fernet key (32 url-safe base64-encoded bytes); make "
            "one with `python -c \"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\"`"
        ) from exc


def encrypt(plain):
    if not plain:
        return ""
    return PREFIX + _fernet().encrypt(plain.encode("utf-8")).decode("ascii")


def decrypt(stored):
    if not stored:
        return ""
    if not stored.startswith(PREFIX):
        raise SecretUnavailable("the stored secret is not encrypted")
    try:
        return _fernet().decrypt(stored[len(PREFIX):].encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise SecretUnavailable("no key in FIELD_ENCRYPTION_KEY decrypts the stored secret") from exc


class Secret(str):
    """A decrypted secret: a str whose repr hides it, so that a traceback's locals or a debug print
    of the object that holds it shows no secret."""

    def __repr__(self):
        return "Secret('********')" if self else "Secret('')"


class EncryptedTextField(models.TextField):
    """A text column holding a Fernet token; the model attribute is the plain text (a Secret).

    A value that cannot be decrypted loads as an empty Secret with `undecryptable` set on it, so that a
    page listing accounts still opens after a key was lost; sending through that account then fails
    as a configuration error, with a message that says so."""

    def from_db_value(self, value, expression, connection):
        if value is None:
            return value
        try:
            return Secret(decrypt(value))
        except SecretUnavailable:
            secret = Secret("")
            secret.undecryptable = value  # saved back unchanged, for a key that comes back
            return secret

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None:
            return value
        if getattr(value, "undecryptable", None):
            return value.undecryptable
        return encrypt(str(value))
