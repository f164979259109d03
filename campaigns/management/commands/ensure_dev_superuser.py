from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create the development admin user if it does not exist (refused when DEBUG is off)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default="admin")
        parser.add_argument("--email", default="admin@example.com")

    def handle(self, *args, username, password, email, **options):
        if not settings.DEBUG:
            raise CommandError("Refusing to create a development superuser with DEBUG off; "
                               "use `manage.py createsuperuser` in production.")
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"Development admin exists: {username}")
            return
        User.objects.create_superuser(username=username, email=email, password=password)
        self.stdout.write(f"Created development admin: {username} / {password}")
