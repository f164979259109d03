from campaigns import services
from campaigns.management.campaign_command import CampaignActionCommand


class Command(CampaignActionCommand):
    help = ("Confirm that the addresses the suppression circuit breaker held really are dead: suppress them "
            "as bounced and resume the campaign it paused.")
    action = services.confirm_dead_addresses
