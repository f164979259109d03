"""Follow-up campaigns: a new draft to a group of an earlier campaign's recipients.

The groups ("segments") are read from the earlier campaign's delivery logs. Who is in each is one
condition on a delivery log, `d` below (docs/follow-ups-and-ab-tests.md):

- openers: a person opened it (opened_at; machine opens do not count) or clicked a link (a click
  proves the message was read even where images were blocked);
- non-openers: sent, not bounced, and neither opened by a person nor clicked (machine opens only
  still count as not opened);
- clickers: clicked any link; clickers of a link: clicked that link (LinkClick rows);
- non-clickers: sent, not bounced, no click;
- failed, unknown: the delivery's status.

Suppressed addresses are left out and counted. The recipients and their imported data are copied in
one INSERT ... SELECT; the new campaign is a draft with the earlier one's content and sending pool
(Campaign.duplicate) that staff edit before sending. After an A/B test, the winner's content, and each
recipient's own subject ({{ ab_subject }}) with the variant it got (ab_variant): `after_ab_test`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.utils import formataddr, parseaddr

from django.conf import settings
from django.db import connection, transaction
from django.db.models import TextChoices

from campaigns.exceptions import CampaignError
from campaigns.message.rendering import find_tags
from campaigns.models import Campaign, CampaignLink, CampaignVariant

logger = logging.getLogger(__name__)


class Segment(TextChoices):
    NON_OPENERS = "non_openers", "Did not open"
    OPENERS = "openers", "Opened by people"  # the campaign page's figure of that name (campaigns.stats.FIGURES)
    CLICKERS = "clickers", "Clicked any link"
    LINK_CLICKERS = "link_clickers", "Clicked this link"
    NON_CLICKERS = "non_clickers", "Did not click"
    FAILED = "failed", "Failed"
    UNKNOWN = "unknown", "Unknown"


_SENT_NOT_BOUNCED = "d.status = 'sent' AND d.bounced_at IS NULL"
CONDITIONS = {
    Segment.NON_OPENERS: f"{_SENT_NOT_BOUNCED} AND d.opened_at IS NULL AND d.clicked_at IS NULL",
    Segment.OPENERS: "(d.opened_at IS NOT NULL OR d.clicked_at IS NOT NULL)",
    Segment.CLICKERS: "d.clicked_at IS NOT NULL",
    Segment.NON_CLICKERS: f"{_SENT_NOT_BOUNCED} AND d.clicked_at IS NULL",
    Segment.FAILED: "d.status = 'failed'",
    Segment.UNKNOWN: "d.status = 'unknown'",
    Segment.LINK_CLICKERS: "d.id IN (SELECT lc.delivery_id FROM campaigns_linkclick lc WHERE lc.link_id = %(link)s)",
}
# The segments counted together in one scan of the campaign's delivery logs (link clickers: per link).
WHOLE_CAMPAIGN = [s for s in Segment if s != Segment.LINK_CLICKERS]

COUNT_SEGMENTS = """
SELECT {columns}
FROM campaigns_deliverylog d
LEFT JOIN campaigns_suppression s ON s.email = lower(d.email)
WHERE d.campaign_id = %(campaign)s
"""

COUNT_LINK_CLICKERS = """
SELECT l.id, count(lc.id) FILTER (WHERE s.email IS NULL), count(s.email)
FROM campaigns_campaignlink l
LEFT JOIN campaigns_linkclick lc ON lc.link_id = l.id
LEFT JOIN campaigns_deliverylog d ON d.id = lc.delivery_id
LEFT JOIN campaigns_suppression s ON s.email = lower(d.email)
WHERE l.campaign_id = %(campaign)s
GROUP BY l.id
"""

# One statement: the group is chosen once, its unsuppressed rows copied, the suppressed ones counted.
# After an A/B test each copied recipient's data also holds the variant it got (its own for the test
# share, the winner's for the rest) and that variant's subject: ab_variant and ab_subject.
COPY_RECIPIENTS = """
WITH chosen AS (
    SELECT r.id, r.email, r.first_name, r.last_name, {data} AS data, s.email IS NOT NULL AS suppressed
    FROM campaigns_deliverylog d
    JOIN campaigns_recipient r ON r.id = d.recipient_id
    LEFT JOIN campaigns_suppression s ON s.email = lower(r.email)
    {join}
    WHERE d.campaign_id = %(campaign)s AND {condition}
), copied AS (
    INSERT INTO campaigns_recipient (campaign_id, email, first_name, last_name, data)
    SELECT %(follow_up)s, email, first_name, last_name, data FROM chosen WHERE NOT suppressed ORDER BY id
    RETURNING 1
)
SELECT (SELECT count(*) FROM copied), (SELECT count(*) FROM chosen WHERE suppressed)
"""


PLAIN_COPY = {"data": "r.data", "join": ""}
AB_COPY = {"data": "r.data || jsonb_strip_nulls(jsonb_build_object('ab_variant', v.letter, 'ab_subject', v.subject))",
           "join": "LEFT JOIN campaigns_campaignvariant v ON v.id = coalesce(d.variant_id, %(winner)s)"}
AB_SUBJECT_TAG = "{{ ab_subject }}"


def after_ab_test(campaign: Campaign) -> dict:
    """A follow-up of an A/B test's campaign: its fields in place of the campaign's ({} for another campaign).

    The content is the winner's, which most recipients got (its subject, From name, HTML and text). The
    subject is each recipient's own, {{ ab_subject }}, when no variant's subject has merge tags (a copied
    subject cannot render them again); otherwise the winner's subject, for everyone."""
    if campaign.ab_test_percent <= 0:
        return {}
    variants = list(CampaignVariant.objects.filter(campaign=campaign))
    if not variants:
        return {}
    fields = {}
    winner = next((variant for variant in variants if variant.pk == campaign.ab_winner_id), None)
    if winner is not None:  # as the senders resolve it (campaigns.experiments.ab_tests.with_variant)
        fields["subject"] = winner.subject
        if winner.html_body:
            fields.update(html_body=winner.html_body, text_body=winner.text_body)
        elif winner.text_body:
            fields["text_body"] = winner.text_body
        if winner.from_name:
            address = parseaddr(campaign.from_email or settings.DEFAULT_FROM_EMAIL)[1]
            fields["from_email"] = formataddr((winner.from_name, address))
    if not any(find_tags(variant.subject) for variant in variants):
        fields["subject"] = AB_SUBJECT_TAG
    return fields


@dataclass(frozen=True)
class Audience:
    segment: str
    label: str
    recipients: int  # who the follow-up would go to
    suppressed: int  # in the group, but suppressed: left out
    link: CampaignLink | None = None


@dataclass(frozen=True)
class FollowUp:
    campaign: Campaign
    recipients: int
    suppressed: int


def check_followable(campaign: Campaign) -> None:
    if campaign.started_at is None:
        raise CampaignError(f"Campaign {campaign.pk} has not started sending: follow-ups are made from the "
                            "recipients of a campaign that was sent.")


def audiences(campaign: Campaign, max_links: int = 50) -> list[Audience]:
    """Every segment's size (and each clicked link's), counted now; suppressed addresses apart."""
    check_followable(campaign)
    columns = ", ".join(
        f"count(*) FILTER (WHERE s.email IS NULL AND {CONDITIONS[seg]}), "
        f"count(*) FILTER (WHERE s.email IS NOT NULL AND {CONDITIONS[seg]})" for seg in WHOLE_CAMPAIGN)
    with connection.cursor() as cursor:
        cursor.execute(COUNT_SEGMENTS.format(columns=columns), {"campaign": campaign.pk})
        row = cursor.fetchone()
        cursor.execute(COUNT_LINK_CLICKERS, {"campaign": campaign.pk})
        by_link = {link_id: (kept, suppressed) for link_id, kept, suppressed in cursor.fetchall()}
    found = [Audience(seg.value, seg.label, row[2 * i], row[2 * i + 1]) for i, seg in enumerate(WHOLE_CAMPAIGN)]
    links = CampaignLink.objects.filter(campaign=campaign).order_by("-clickers", "id")[:max_links]
    found += [Audience(Segment.LINK_CLICKERS.value, Segment.LINK_CLICKERS.label, *by_link.get(link.pk, (0, 0)),
                       link=link) for link in links]
    return found


def create_follow_up(campaign_id: int, segment: str, link_id: int | None = None, created_by=None) -> FollowUp:
    """A draft campaign with the earlier campaign's content, to the recipients of SEGMENT (not suppressed)."""
    campaign = Campaign.objects.get(pk=campaign_id)
    check_followable(campaign)
    segment = Segment(segment)
    link = None
    if segment == Segment.LINK_CLICKERS:
        link = CampaignLink.objects.filter(pk=link_id, campaign=campaign).first()
        if link is None:
            raise CampaignError(f"Campaign {campaign.pk} has no such clicked link: choose one of its links.")
    what = f"clicked {link.url}" if link else segment.label.lower()
    with transaction.atomic():
        # Through the same pool; no segment: the group below is its whole audience.
        follow_up = campaign.duplicate(with_recipients=False, name=f"{campaign.name} — {what}"[:200],
                                       created_by=created_by, segment=None)
        ab = after_ab_test(campaign)
        with connection.cursor() as cursor:
            cursor.execute(COPY_RECIPIENTS.format(condition=CONDITIONS[segment], **(AB_COPY if ab else PLAIN_COPY)),
                           {"campaign": campaign.pk, "follow_up": follow_up.pk, "link": link.pk if link else None,
                            "winner": campaign.ab_winner_id})
            copied, suppressed = cursor.fetchone()
        if ab:
            Campaign.objects.filter(pk=follow_up.pk).update(**ab)
        if not copied:
            # Nothing to send to: no draft is left behind (the transaction is rolled back).
            raise CampaignError(f"No recipients {what} in campaign {campaign.pk}"
                                + (f" ({suppressed} suppressed left out)." if suppressed else "."))
        # merge_fields stays unset: this subset's columns are read on first use (recipient_data_keys).
        Campaign.objects.filter(pk=follow_up.pk).update(total_recipients=copied)
        follow_up.refresh_from_db()
    logger.info("Campaign %s: follow-up campaign %s to %s (link %s): %d recipients, %d suppressed left out",
                campaign.pk, follow_up.pk, segment.value, link.pk if link else "-", copied, suppressed)
    return FollowUp(follow_up, copied, suppressed)
