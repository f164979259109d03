from django.core.management.base import BaseCommand, CommandError

from campaigns.security.staff_groups import ensure_staff_groups


class Command(BaseCommand):
    help = ('Create (or reset) the staff groups "Campaign editor", "Campaign sender" and "Viewer" with their '
            "permissions. Safe to run again.")

    def handle(self, *args, **options):
        try:
            groups = ensure_staff_groups()
        except LookupError as error:
            raise CommandError(str(error)) from error
        for name, created in groups:
            self.stdout.write(f"{'Created' if created else 'Updated'} group “{name}”.")
