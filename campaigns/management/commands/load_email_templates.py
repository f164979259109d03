from django.core.management.base import BaseCommand

from campaigns.message.starter_templates import load_starter_templates


class Command(BaseCommand):
    help = "Load the starter templates in email_templates/ as EmailTemplate rows (safe to run again)."

    def handle(self, *args, **options):
        created, updated = load_starter_templates()
        self.stdout.write(f"Starter templates: created={created} updated={updated}")
