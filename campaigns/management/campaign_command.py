"""One base for the commands that apply a single staff action to a campaign."""

from django.core.management.base import BaseCommand, CommandError

from campaigns.exceptions import CampaignError, IllegalTransition
from campaigns.models import Campaign


class CampaignActionCommand(BaseCommand):
    action = None  # a function of campaigns.services taking the campaign id

    def add_arguments(self, parser):
        parser.add_argument("campaign_id", type=int)

    def run_action(self, campaign_id, **options):
        return type(self).action(campaign_id)

    def handle(self, *args, campaign_id, **options):
        try:
            message = self.run_action(campaign_id, **options)
        except Campaign.DoesNotExist as missing:
            raise CommandError(f"Campaign #{campaign_id} does not exist.") from missing
        except (IllegalTransition, CampaignError) as refused:
            raise CommandError(str(refused)) from refused
        self.stdout.write(f"Campaign #{campaign_id}: {message}")
