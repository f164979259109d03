"""The completion report: when a campaign completes, fails or is cancelled (after it started sending), an
email to the staff member who scheduled it (or created it) and to CAMPAIGN_REPORT_RECIPIENTS, with its
totals and rates, how long it took, the most frequent failure reasons and a link to its page.

Sent through the environment's providers (campaigns.sending.chain), as a test email is: with no
delivery log, so it is never counted in the campaign. A campaign's `completion_report` switch turns it off.
Sent once per ending: a Redis key per (campaign, completed_at) stops a redelivered task sending it again.
"""

import logging

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.template.loader import render_to_string
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.notifications.mail import send_to_staff
from campaigns.stats import CampaignStats

logger = logging.getLogger(__name__)
TOP_REASONS = 5
SENT_KEY_DAYS = 7


def recipients_of(campaign):
    people = [user.email for user in (campaign.scheduled_by, campaign.created_by) if user and user.email][:1]
    return list(dict.fromkeys(a.strip().lower() for a in [*people, *settings.CAMPAIGN_REPORT_RECIPIENTS] if a.strip()))


# Reasons grouped with the recipient's address taken out (an SMTP reply often names it), so that one reason
# counts once for every recipient it refused, and no address is in the report.
FAILURE_REASONS = r"""
SELECT left(regexp_replace(last_error, '<?[^\s<>@]+@[^\s<>]+>?', '<address>', 'g'), 300) AS reason, count(*)
FROM campaigns_deliverylog
WHERE campaign_id = %s AND status IN ('failed', 'unknown') AND last_error <> ''
GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %s
"""


def failure_reasons(campaign_id, limit=TOP_REASONS):
    """The most frequent reasons of failed and unknown deliveries: [(reason, count)]."""
    with connection.cursor() as cursor:
        cursor.execute(FAILURE_REASONS, [campaign_id, limit])
        return cursor.fetchall()


def report_context(campaign):
    figures = CampaignStats.of(campaign)
    rates = figures.engagement_rates()
    return {"campaign": campaign, "figures": figures, "rates": rates, "status": campaign.get_status_display(),
            "duration": figures.as_dict()["duration"], "reasons": failure_reasons(campaign.pk),
            "url": f"{settings.SITE_URL}/admin/campaigns/campaign/{campaign.pk}/change/"}


def send_completion_report(campaign_id):
    """Send the report of an ended campaign; returns the addresses it went to ([] when none is due)."""
    campaign = Campaign.objects.select_related("scheduled_by", "created_by").filter(pk=campaign_id).first()
    if (campaign is None or not campaign.completion_report or campaign.started_at is None
            or campaign.status not in (Campaign.Status.COMPLETED, Campaign.Status.FAILED, Campaign.Status.CANCELLED)):
        return []
    addresses = recipients_of(campaign)
    ended = campaign.completed_at.isoformat() if campaign.completed_at else "-"
    if not addresses or not cache.add(f"completion-report:{campaign_id}:{ended}", 1, timeout=SENT_KEY_DAYS * 86400):
        return []
    context = report_context(campaign)
    provider, sent = send_to_staff(
        addresses, f"Campaign {campaign.get_status_display().lower()}: {campaign.name}",
        render_to_string("campaigns/reports/completion_report.txt", context),
        render_to_string("campaigns/reports/completion_report.html", context), campaign_id, "completion-report")
    logger.info("Campaign %s completion report sent via %s to %s of %s recipients at %s", campaign_id, provider,
                len(sent), len(addresses), timezone.now().isoformat())
    return sent
