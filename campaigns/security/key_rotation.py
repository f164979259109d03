"""Rotating FIELD_ENCRYPTION_KEY: every stored secret encrypted again under the first key.

Apart from campaigns.security.encryption, which the models import for their encrypted fields, because
this reads the models.
"""

from campaigns.models import SendingAccount
from campaigns.security.encryption import EncryptedTextField

# Every encrypted field of an account (the password or API key, the bounce mailbox's password, the DKIM
# private key, ...).
ENCRYPTED_FIELDS = [f.name for f in SendingAccount._meta.concrete_fields if isinstance(f, EncryptedTextField)]


def reencrypt_account_secrets():
    """Every sending account's secrets encrypted again under the first key of FIELD_ENCRYPTION_KEY
    (after a new key was put first); returns (re-encrypted, undecryptable) counts of secrets."""
    done = lost = 0
    for account in SendingAccount.objects.all():
        fields = []
        for name in ENCRYPTED_FIELDS:
            value = getattr(account, name)
            if getattr(value, "undecryptable", None):
                lost += 1
            elif value:
                fields.append(name)
        if fields:
            account.save(update_fields=fields)
            done += len(fields)
    return done, lost
