from campaigns.management.campaign_command import CampaignActionCommand
from campaigns.sending import control


class Command(CampaignActionCommand):
    help = "Re-send recipients whose delivery is unknown. Explicit: some may receive it twice."
    action = control.resend_unknown
