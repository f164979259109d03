"""Rotating FIELD_ENCRYPTION_KEY: every stored secret encrypted again under the first key.

Apart from campaigns.security.encryption, which the models import for their encrypted fields, because
this reads the models.
"""

from campaigns.models import SendingAccount


def reencrypt_account_secrets():
    """Every sending account's secret encrypted again under the first key of FIELD_ENCRYPTION_KEY
    (after a new key was put first); returns (re-encrypted, undecryptable) counts."""
    done = lost = 0
    for account in SendingAccount.objects.exclude(secret=""):
        if getattr(account.secret, "undecryptable", None):
            lost += 1
            continue
        account.save(update_fields=["secret"])
        done += 1
    return done, lost
