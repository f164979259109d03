from campaigns.management.campaign_command import CampaignActionCommand
from campaigns.sending import control


class Command(CampaignActionCommand):
    help = "Pause a campaign at the next batch boundary."
    action = control.pause
