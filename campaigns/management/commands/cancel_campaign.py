from campaigns import services
from campaigns.management.campaign_command import CampaignActionCommand


class Command(CampaignActionCommand):
    help = "Cancel a campaign; recipients not yet sent become skipped (cancelled)."
    action = services.cancel
