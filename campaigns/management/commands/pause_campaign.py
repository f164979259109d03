from campaigns import services
from campaigns.management.campaign_command import CampaignActionCommand


class Command(CampaignActionCommand):
    help = "Pause a campaign at the next batch boundary."
    action = services.pause
