"""A/B tests (docs/follow-ups-and-ab-tests.md, "A/B tests").

A campaign with two to four variants (CampaignVariant) and a test share sends that share of its
recipients, split evenly at random, one variant each; the rest wait in held batches. When the wait
ends (an ETA task, and the sweep as the safety net), or when staff pick a variant sooner, the winner
goes to the rest. Every recipient still has exactly one delivery log, whichever variant it got.
"""

import logging
from dataclasses import dataclass
from email.utils import formataddr, parseaddr
from fractions import Fraction

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from campaigns import states
from campaigns.exceptions import CampaignError
from campaigns.models import Campaign, CampaignVariant, DeliveryLog, SendBatch, campaign_label
from campaigns.sending.dispatch import queue_batches

logger = logging.getLogger(__name__)
D = DeliveryLog.Status
MIN_VARIANTS, MAX_VARIANTS = 2, 4
NO_TEST_SENDS = ("A/B test: none of the test recipients could be sent to, so no variant can win by its figures. "
                 "Pick the variant to send to the rest in the A/B test panel, then resume.")
FIELD_NAMES = {"subject": "its subject", "html_body": "its HTML", "text_body": "its plain text"}
SEND_WINNER_TASK = "campaigns.tasks.scheduler.send_ab_winner"


@dataclass
class AbSplit:
    """An A/B test's split at the start: PERCENT of the sendable rows, dealt to VARIANT_IDS (in letter order)."""
    percent: int
    variant_ids: list
    seed: str


def is_ab_test(campaign):
    return campaign.ab_test_percent > 0


def check_ready(campaign_id):
    """A CampaignError saying what is wrong with the campaign's A/B test, before it is scheduled: the
    number of variants, and each variant's content, checked as the campaign's own is when saved."""
    campaign = Campaign.objects.get(pk=campaign_id)
    if not is_ab_test(campaign):
        return
    count = campaign.variants.count()
    if not MIN_VARIANTS <= count <= MAX_VARIANTS:
        raise CampaignError(f"Campaign #{campaign_id} has an A/B test share of {campaign.ab_test_percent} % but "
                            f"{count} variants: add two to four, or set the share to 0.")
    for variant in campaign.variants.order_by("letter"):
        problems = variant.content_problems()
        if problems:
            raise CampaignError(f"Campaign #{campaign_id}'s variant {variant.letter} cannot be sent: "
                                + " ".join(f"{FIELD_NAMES[field]}: {problem}" for field, problem in problems.items()))


def split_for(campaign):
    """The AbSplit the start uses for CAMPAIGN, or None when it is not an A/B test."""
    if not is_ab_test(campaign):
        return None
    variant_ids = list(campaign.variants.order_by("letter").values_list("id", flat=True))
    if len(variant_ids) < MIN_VARIANTS:
        return None  # checked at scheduling; a variant deleted since leaves an ordinary campaign
    return AbSplit(percent=campaign.ab_test_percent, variant_ids=variant_ids[:MAX_VARIANTS],
                   seed=f"{campaign.pk}:{campaign.created_at.isoformat()}")


def start_wait(campaign):
    """At the start (inside its transaction): record when the test ends and queue the winner's send then."""
    ends_at = timezone.now() + campaign.ab_wait
    Campaign.objects.filter(pk=campaign.pk).update(ab_test_ends_at=ends_at)
    label = campaign_label(campaign.pk, campaign.name)
    transaction.on_commit(lambda: current_app.send_task(SEND_WINNER_TASK, kwargs={"campaign_id": campaign.pk},
                                                        eta=ends_at, argsrepr=label))


def with_variant(campaign, variant_id):
    """The campaign's send values (a dict, as send_batch reads them) with variant VARIANT_ID's subject,
    From name and content in place of the campaign's."""
    variant = (CampaignVariant.objects.filter(pk=variant_id)
               .values("id", "letter", "subject", "from_name", "html_body", "text_body", "updated_at").first())
    if variant is None:
        return campaign
    values = dict(campaign, subject=variant["subject"], variant=(variant["id"], variant["updated_at"]),
                  variant_letter=variant["letter"])
    if variant["html_body"]:
        values.update(html_body=variant["html_body"], text_body=variant["text_body"])
    elif variant["text_body"]:
        values["text_body"] = variant["text_body"]
    if variant["from_name"]:
        address = parseaddr(campaign["from_email"] or settings.DEFAULT_FROM_EMAIL)[1]
        values["from_email"] = formataddr((variant["from_name"], address))
    return values


def html_body_sent(campaign_id, variant_id=None):
    """The HTML a recipient got: its variant's own, or the campaign's (the click redirect's links)."""
    if variant_id is not None:
        html = CampaignVariant.objects.filter(pk=variant_id).values_list("html_body", flat=True).first()
        if html:
            return html
    return Campaign.objects.filter(pk=campaign_id).values_list("html_body", flat=True).first()


@dataclass
class VariantFigures:
    variant_id: int
    letter: str
    subject: str
    recipients: int = 0
    sent: int = 0
    opened: int = 0  # by people: machine opens are left out
    clicked: int = 0

    def rate(self, metric):
        count = self.clicked if metric == Campaign.AbMetric.CLICKS else self.opened
        return Fraction(count, self.sent) if self.sent else Fraction(0)

    @property
    def open_percent(self):
        return round(100 * float(self.rate(Campaign.AbMetric.OPENS)), 1)

    @property
    def click_percent(self):
        return round(100 * float(self.rate(Campaign.AbMetric.CLICKS)), 1)


def variant_figures(campaign_id):
    """Each variant's test rows: recipients, sent, opened by people, clicked; in letter order."""
    counts = {row["variant_id"]: row for row in (
        DeliveryLog.objects.filter(campaign_id=campaign_id, variant__isnull=False).values("variant_id")
        .annotate(recipients=Count("id"), sent=Count("id", filter=Q(status=D.SENT)),
                  opened=Count("id", filter=Q(opened_at__isnull=False)),
                  clicked=Count("id", filter=Q(clicked_at__isnull=False))))}
    figures = []
    for variant in CampaignVariant.objects.filter(campaign_id=campaign_id).order_by("letter"):
        row = counts.get(variant.pk, {})
        figures.append(VariantFigures(variant.pk, variant.letter, variant.subject, row.get("recipients", 0),
                                      row.get("sent", 0), row.get("opened", 0), row.get("clicked", 0)))
    return figures


METRIC_WORDS = {Campaign.AbMetric.OPENS: "opened by people", Campaign.AbMetric.CLICKS: "clicked"}


def leader_text(figures, metric):
    """Who leads by METRIC, for staff: "B leads, 31 % vs 24 %" (more variants: "B leads, 31 % vs 24 % (A), 20 % (C)"),
    "A and B tied at 24 %", or "no test messages sent yet". Whole percents of each variant's sent test rows."""
    sent = [f for f in figures if f.sent]
    if not sent:
        return "no test messages sent yet"
    ranked = sorted(sent, key=lambda f: (-f.rate(metric), f.letter))
    percent = {f.letter: round(100 * float(f.rate(metric))) for f in ranked}
    best, others = ranked[0], ranked[1:]
    if not others:
        return f"only {best.letter} has test sends so far: {percent[best.letter]} %"
    tied = [f.letter for f in ranked if f.rate(metric) == best.rate(metric)]
    if len(tied) > 1:
        return f"{' and '.join(tied)} tied at {percent[best.letter]} %"
    if len(others) == 1:
        return f"{best.letter} leads, {percent[best.letter]} % vs {percent[others[0].letter]} %"
    return (f"{best.letter} leads, {percent[best.letter]} % vs "
            + ", ".join(f"{percent[f.letter]} % ({f.letter})" for f in others))


def choose_winner(figures, metric):
    """The variant with the highest rate of METRIC among its sent test rows; a tie goes to the earlier letter."""
    if not figures:
        return None
    return max(figures, key=lambda f: (f.rate(metric), [-ord(c) for c in f.letter])).variant_id


def send_winner(campaign_id, variant_id=None):
    """End the campaign's A/B test: the winner (VARIANT_ID when staff pick it, else by the metric, once
    every test row is sent: a rate of nothing chooses nothing) goes to the held rest. Once only: a
    conditional update on the campaign's winner. Returns the winner's letter, or None when there is
    nothing to do (no test, already decided, not started, test rows still to send)."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().filter(pk=campaign_id).first()
        if campaign is None or not is_ab_test(campaign) or campaign.ab_test_ends_at is None:
            if variant_id is not None:
                raise CampaignError(f"Campaign #{campaign_id} has no A/B test under way to pick a winner for.")
            return None
        if campaign.ab_winner_id is not None:
            if variant_id is not None:
                raise CampaignError(f"Campaign #{campaign_id}'s A/B winner is already variant "
                                    f"{campaign.ab_winner.letter}.")
            return None
        if campaign.status not in (Campaign.Status.IN_PROGRESS, Campaign.Status.PAUSED,
                                   Campaign.Status.COMPLETED):
            if variant_id is not None:
                raise CampaignError(f"Campaign #{campaign_id} is {campaign.get_status_display().lower()}: "
                                    "no winner can be sent.")
            return None
        if variant_id is None:
            if awaiting_test_sends(campaign_id):
                # No figures to choose from yet (the start still creating rows, paused, waiting for
                # quota): the sweep looks again.
                logger.debug("Campaign %s A/B winner waits for the test sends", campaign_id)
                return None
            figures = variant_figures(campaign_id)
            if not any(f.sent for f in figures):
                # Every test row ended unsent (failed): 0 of 0 everywhere would make letter A win.
                if campaign.status == Campaign.Status.IN_PROGRESS:
                    states.pause(campaign_id, reason=NO_TEST_SENDS)
                    logger.warning("Campaign %s paused: no A/B test row was sent, staff pick the winner", campaign_id)
                return None
            winner_id = choose_winner(figures, campaign.ab_metric)
            picked = "by the metric"
        elif CampaignVariant.objects.filter(pk=variant_id, campaign_id=campaign_id).exists():
            winner_id, picked = variant_id, "by hand"
        else:
            raise CampaignError(f"Variant #{variant_id} is not one of campaign #{campaign_id}'s variants.")
        if winner_id is None:
            return None
        if not Campaign.objects.filter(pk=campaign_id, ab_winner__isnull=True).update(ab_winner_id=winner_id):
            return None
        released = SendBatch.objects.filter(campaign_id=campaign_id, status=SendBatch.Status.HELD).update(
            status=SendBatch.Status.WAITING, variant_id=winner_id, updated_at=timezone.now())
        if campaign.status == Campaign.Status.IN_PROGRESS:
            queue_batches(campaign_id)  # a paused campaign's resume queues them
        letter = CampaignVariant.objects.get(pk=winner_id).letter
    logger.info("Campaign %s A/B winner: variant %s (%s), %s held batches released", campaign_id, letter,
                picked, released)
    return letter


def unsent_test_batches(campaign_id=None):
    """Before the winner: the test batches (each of one variant; the held rest has none) with rows still
    to send. A batch is done once its every row is, so this reads batches, never the many rows."""
    batches = SendBatch.objects.filter(variant__isnull=False).exclude(status=SendBatch.Status.DONE)
    return batches.filter(campaign_id=campaign_id if campaign_id is not None else OuterRef("pk"))


def awaiting_test_sends(campaign_id):
    """Whether the automatic winner must still wait: some test row is not sent yet (or not even created:
    the start is still creating rows, campaign.start_cursor)."""
    return (Campaign.objects.filter(pk=campaign_id, start_cursor__isnull=False).exists()
            or unsent_test_batches(campaign_id).exists())


def waiting_for_test_sends(campaign):
    """The wait is over and no winner is chosen, because test rows are still to be sent (the page says so)."""
    return (campaign.ab_winner_id is None and campaign.ab_test_ends_at is not None
            and campaign.ab_test_ends_at <= timezone.now() and awaiting_test_sends(campaign.pk))


def due_winners():
    """Live campaigns whose A/B wait is over, whose test rows are all sent, and whose winner is not chosen
    yet (the sweep's check)."""
    return list(Campaign.objects.filter(status=Campaign.Status.IN_PROGRESS, ab_test_percent__gt=0,
                                        ab_winner__isnull=True, ab_test_ends_at__lte=timezone.now(),
                                        start_cursor__isnull=True)
                .exclude(Exists(unsent_test_batches())).values_list("id", flat=True))
