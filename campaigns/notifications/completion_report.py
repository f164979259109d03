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
from django.db.models import Count
from django.template.loader import render_to_string
from django.utils import timezone

from campaigns.message.rendering import compile_campaign
from campaigns.models import Campaign, DeliveryLog
from campaigns.sending.chain import send_with_fallback
from campaigns.sending.providers.base import Batch, OutgoingMessage, Outcome
from campaigns.stats import CampaignStats

logger = logging.getLogger(__name__)
TOP_REASONS = 5
SENT_KEY_DAYS = 7


def recipients_of(campaign):
    people = [user.email for user in (campaign.scheduled_by, campaign.created_by) if user and user.email][:1]
    return list(dict.fromkeys(a.strip().lower() for a in [*people, *settings.CAMPAIGN_REPORT_RECIPIENTS] if a.strip()))


def failure_reasons(campaign_id, limit=TOP_REASONS):
    """The most frequent reasons of failed and unknown deliveries: [(reason, count)]."""
    rows = (DeliveryLog.objects.filter(campaign_id=campaign_id, status__in=(DeliveryLog.Status.FAILED,
                                                                            DeliveryLog.Status.UNKNOWN))
            .exclude(last_error="").values("last_error").annotate(n=Count("id")).order_by("-n", "last_error")[:limit])
    return [(row["last_error"][:300], row["n"]) for row in rows]


def report_context(campaign):
    figures = CampaignStats.of(campaign)
    rates = figures.engagement_rates()
    return {"campaign": campaign, "figures": figures, "rates": rates, "status": campaign.get_status_display(),
            "duration": figures.as_dict()["duration"], "reasons": failure_reasons(campaign.pk),
            "url": f"{settings.SITE_URL}/admin/campaigns/campaign/{campaign.pk}/change/"}


def _no_tags(text, html=False):
    """The report is rendered already: nothing in it (a campaign's name, a reason) may read as a merge tag."""
    return text.replace("{", "&#123;") if html else text.replace("{{", "{ {")


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
    subject = f"Campaign {campaign.get_status_display().lower()}: {campaign.name}"
    compiled = compile_campaign(_no_tags(subject),
                                _no_tags(render_to_string("campaigns/reports/completion_report.html", context), True),
                                _no_tags(render_to_string("campaigns/reports/completion_report.txt", context)))
    batch = Batch(campaign_id=campaign_id, from_email=settings.DEFAULT_FROM_EMAIL, reply_to="", compiled=compiled,
                  messages=[OutgoingMessage(delivery_id=0, email=a, context={"email": a}) for a in addresses],
                  categories=("completion-report",))
    provider, results = send_with_fallback(batch)
    sent = [m.email for m, r in zip(batch.messages, results) if r.outcome == Outcome.SENT]
    logger.info("Campaign %s completion report sent via %s to %s of %s recipients at %s", campaign_id, provider,
                len(sent), len(addresses), timezone.now().isoformat())
    return sent
