from django.core.management.base import BaseCommand

from campaigns.security.key_rotation import reencrypt_account_secrets


class Command(BaseCommand):
    help = ("Encrypt every sending account's password or API key again under the first FIELD_ENCRYPTION_KEY "
            "(after putting a new key first); the old key can be dropped afterwards.")

    def handle(self, *args, **options):
        done, lost = reencrypt_account_secrets()
        self.stdout.write(f"Re-encrypted {done} account secret(s).")
        if lost:
            self.stderr.write(f"{lost} account secret(s) could not be decrypted with any key: enter them again in "
                              f"the admin.")
