from campaigns import services
from campaigns.management.campaign_command import CampaignActionCommand


class Command(CampaignActionCommand):
    help = "Send again to the failed recipients of a campaign (only those)."
    action = services.retry_failed
