from campaigns import services
from campaigns.management.campaign_command import CampaignActionCommand


class Command(CampaignActionCommand):
    help = "Resume a paused campaign from where it stopped."
    action = services.resume
