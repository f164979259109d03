from campaigns.management.campaign_command import CampaignActionCommand
from campaigns.sending import control


class Command(CampaignActionCommand):
    help = "Cancel a campaign; recipients not yet sent become skipped (cancelled)."
    action = control.cancel
