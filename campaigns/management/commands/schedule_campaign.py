from datetime import datetime

from django.core.management.base import CommandError
from django.utils import timezone

from campaigns import services
from campaigns.management.campaign_command import CampaignActionCommand


class Command(CampaignActionCommand):
    help = "Schedule a campaign: --now, or --at 'YYYY-MM-DD HH:MM' in the configured TIME_ZONE."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        when = parser.add_mutually_exclusive_group(required=True)
        when.add_argument("--now", action="store_true")
        when.add_argument("--at", help="local time in TIME_ZONE, e.g. '2026-12-01 09:00'")

    def run_action(self, campaign_id, now=False, at=None, **options):
        if now:
            return services.send_now(campaign_id)
        try:
            local = datetime.fromisoformat(at)
        except ValueError as error:
            raise CommandError(f"--at {at!r} is not a date and time like '2026-12-01 09:00'.") from error
        if timezone.is_naive(local):
            local = timezone.make_aware(local)
        return services.schedule(campaign_id, local)
