from campaigns import services
from campaigns.management.campaign_command import CampaignActionCommand


class Command(CampaignActionCommand):
    help = "Re-send recipients whose delivery is unknown. Explicit: some may receive it twice."
    action = services.resend_unknown
