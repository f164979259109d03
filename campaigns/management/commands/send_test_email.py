from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from campaigns import services
from campaigns.audience.validators import validate_email_address
from campaigns.management.campaign_command import CampaignActionCommand


class Command(CampaignActionCommand):
    help = "Send the rendered campaign to the given addresses; touches no delivery log or counter."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("addresses", nargs="+", metavar="ADDRESS")
        parser.add_argument("--recipient", default="", help="The address of the recipient whose data the test uses "
                                                            "(default: the first of the campaign's audience).")

    def run_action(self, campaign_id, addresses=(), recipient="", **options):
        try:
            valid = [validate_email_address(a).normalized for a in addresses]
        except ValidationError as error:
            raise CommandError(f"Not an email address: {error.params['reason']}") from error
        return services.send_test_email(campaign_id, valid, recipient=recipient)
