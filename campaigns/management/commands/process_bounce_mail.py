import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from campaigns.engagement.bounce_mail.processing import process_files
from campaigns.exceptions import BounceInputError

# sysexits.h EX_TEMPFAIL: Postfix's pipe transport defers the message and tries again later.
EX_TEMPFAIL = 75


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
        except DatabaseError as exc:
            # Nothing was applied (one transaction): a mail server piping into this keeps the message and retries.
            raise CommandError(f"the database is unavailable, nothing was applied; try again later "
                               f"({type(exc).__name__})", returncode=EX_TEMPFAIL) from exc
        for message in report.messages:
            self.stdout.write(message.describe())
        self.stdout.write(report.summary())
