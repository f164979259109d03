import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from campaigns import services
from campaigns.audience.importing.service import import_recipients
from campaigns.exceptions import ImportRefused
from campaigns.message.starter_templates import load_starter_templates
from campaigns.models import Campaign, EmailTemplate

FINISHED = (Campaign.Status.COMPLETED, Campaign.Status.FAILED, Campaign.Status.CANCELLED)


class Command(BaseCommand):
    help = ("Create a campaign from a starter template with sample_recipients.csv, send it now, wait until "
            "it completes and print the delivery summary. Needs the workers running.")

    def add_arguments(self, parser):
        parser.add_argument("--template", default="newsletter")
        parser.add_argument("--csv", default=str(Path(settings.BASE_DIR) / "sample_recipients.csv"))
        parser.add_argument("--timeout", type=int, default=300, help="seconds to wait for completion")

    def handle(self, *args, template, csv, timeout, **options):
        load_starter_templates()
        try:
            starter = EmailTemplate.objects.get(key=template)
        except EmailTemplate.DoesNotExist as missing:
            raise CommandError(f"No template {template!r}; try one of: "
                               f"{', '.join(EmailTemplate.objects.values_list('key', flat=True))}") from missing
        campaign = services.create_from_template(starter, name=f"Demo {timezone.localtime():%Y-%m-%d %H:%M:%S}")
        try:
            report = import_recipients(campaign, path=csv)
        except ImportRefused as refused:
            raise CommandError(str(refused)) from refused
        self.stdout.write(f"Campaign #{campaign.pk} {campaign.name!r} from template {starter.name!r}: "
                          f"imported={report.imported} invalid={report.invalid} "
                          f"duplicates={report.duplicates_in_file}")
        services.send_now(campaign.pk)
        self.wait(campaign, timeout)
        self.summarize(campaign)

    def wait(self, campaign, timeout):
        deadline = time.monotonic() + timeout
        with tqdm(total=campaign.recipients.count(), unit="recipient", disable=None) as bar:
            while campaign.status not in FINISHED:
                if time.monotonic() > deadline:
                    raise CommandError(f"Campaign #{campaign.pk} did not finish within {timeout}s: is a worker "
                                       f"running on the 'scheduler' and 'senders' queues?")
                time.sleep(0.5)
                campaign.refresh_from_db()
                bar.update(campaign.processed_count - bar.n)

    def summarize(self, campaign):
        duration = (campaign.completed_at - campaign.started_at).total_seconds() if campaign.started_at else 0
        self.stdout.write(
            f"Campaign #{campaign.pk} {campaign.get_status_display().lower()} in {duration:.1f}s: "
            f"sent={campaign.sent_count} failed={campaign.failed_count} skipped={campaign.skipped_count} "
            f"unknown={campaign.unknown_count}"
        )
        if settings.SENDGRID_API_KEY:
            self.stdout.write(f"Messages went to SendGrid at {settings.SENDGRID_API_HOST}.")
        elif (settings.EMAIL_HOST, settings.EMAIL_PORT) == ("127.0.0.1", settings.MAIL_SINK_PORT):
            self.stdout.write(f"Messages landed in {settings.MAIL_SINK_DIR}/ (one .eml file per message).")
        else:
            self.stdout.write(f"Messages went to the SMTP server {settings.EMAIL_HOST}:{settings.EMAIL_PORT}.")
