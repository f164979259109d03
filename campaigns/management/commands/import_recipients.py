"""python manage.py import_recipients CAMPAIGN_ID PATH [--sheet NAME] [--check-mx]"""

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from campaigns.audience.importing.service import import_recipients
from campaigns.exceptions import ImportRefused
from campaigns.models import Campaign


class Command(BaseCommand):
    help = ("Import recipients from a CSV, XLSX or XLS file into a campaign, as the admin does. "
            "The last line printed is the summary: imported=N duplicates=N invalid=N suppressed=N.")

    def add_arguments(self, parser):
        parser.add_argument("campaign_id", type=int)
        parser.add_argument("path")
        parser.add_argument("--sheet", default=None, help="Worksheet to read (default: the first).")
        parser.add_argument("--check-mx", action="store_true",
                            help="Reject addresses whose domain has no MX record (one DNS lookup per domain).")

    def handle(self, *args, campaign_id, path, sheet, check_mx, **options):
        campaign = Campaign.objects.filter(pk=campaign_id).first()
        if campaign is None:
            raise CommandError(f"There is no campaign with id {campaign_id}.")
        bar = tqdm(total=0, unit=" rows", file=sys.stderr, disable=not sys.stderr.isatty())

        def progress(done, estimated):
            bar.total = max(estimated, done)
            bar.update(done - bar.n)

        try:
            report = import_recipients(campaign, path, sheet=sheet, progress=progress, check_mx=check_mx)
        except ImportRefused as refusal:
            raise CommandError(str(refusal)) from None
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror}.") from None
        finally:
            bar.close()
        record = report.recipient_import
        self.stdout.write(
            f"rows={report.rows} already_present={report.already_present} "
            f"duplicates_in_file={report.duplicates_in_file}"
        )
        if record.rejected_file:
            self.stdout.write(f"rejected rows: {record.rejected_file.path}")
        self.stdout.write(report.summary_line())
