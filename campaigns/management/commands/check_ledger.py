from django.core.management.base import BaseCommand, CommandError

from campaigns.models import Campaign
from campaigns.sending.ledger import check_counters


class Command(BaseCommand):
    help = ("Recompute campaign counters (sent, failed, skipped, unknown) from the delivery rows and report "
            "any drift; --fix writes the recomputed values.")

    def add_arguments(self, parser):
        parser.add_argument("campaign_id", type=int, nargs="?", help="one campaign (default: every campaign)")
        parser.add_argument("--fix", action="store_true", help="correct the counters that drifted")

    def handle(self, *args, campaign_id=None, fix=False, **options):
        if campaign_id is not None and not Campaign.objects.filter(pk=campaign_id).exists():
            raise CommandError(f"Campaign #{campaign_id} does not exist.")
        drift = check_counters(None if campaign_id is None else [campaign_id], fix=fix)
        for item in drift:
            self.stdout.write(f"{item}{' (fixed)' if fix else ''}")
        campaigns = len({item.campaign_id for item in drift})
        if not drift:
            self.stdout.write("Counters match the rows.")
        elif fix:
            self.stdout.write(f"Fixed {len(drift)} counters of {campaigns} campaigns.")
        else:
            raise CommandError(f"{len(drift)} counters of {campaigns} campaigns drifted from the rows; "
                               "run again with --fix to correct them.")
