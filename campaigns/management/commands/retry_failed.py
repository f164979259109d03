from campaigns.management.campaign_command import CampaignActionCommand
from campaigns.sending import control


class Command(CampaignActionCommand):
    help = "Send again to the failed recipients of a campaign (only those)."
    action = control.retry_failed
