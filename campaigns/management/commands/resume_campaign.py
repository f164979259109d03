from campaigns.management.campaign_command import CampaignActionCommand
from campaigns.sending import control


class Command(CampaignActionCommand):
    help = "Resume a paused campaign from where it stopped."
    action = control.resume
