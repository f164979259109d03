import sys

from django.core.management.base import BaseCommand, CommandError

from campaigns.engagement.bounce_mail.processing import process_files
from campaigns.exceptions import BounceInputError


class Command(BaseCommand):
    help = ("Read bounce, complaint (ARF) and auto-reply messages and apply them: each FILE holds one message "
            "or an mbox; '-' reads standard input (Postfix's pipe transport). Prints what it did with each.")

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", metavar="FILE", help="a message or an mbox file; - for standard input")

    def handle(self, *args, files, **options):
        try:
            report = process_files(files, stdin=sys.stdin.buffer)
        except BounceInputError as exc:
            raise CommandError(str(exc)) from exc
        for message in report.messages:
            self.stdout.write(message.describe())
        self.stdout.write(report.summary())
