"""The periodic safety net (beat, scheduler queue): nothing is lost when a worker or Redis dies.

1. Due scheduled campaigns are started (ETA tasks are the fast path; this catches any that vanished),
   and campaigns due before the next sweep get an ETA task, so they start on the second.
2. Expired claims are recovered: back to pending when no provider call began, else unknown.
3. Live campaigns that stopped progressing get their pending batches dispatched again.
4. Live campaigns whose every recipient is terminal are finalised.
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from campaigns.models import Campaign, DeliveryLog
from campaigns.sending.pipeline import dispatch_batches, enqueue_start, finalize_if_done, pending_batch_numbers

logger = logging.getLogger(__name__)
S = Campaign.Status

RECOVER_EXPIRED_CLAIMS = """
UPDATE campaigns_deliverylog
SET status = CASE WHEN call_started_at IS NULL THEN 'pending' ELSE 'unknown' END,
    last_error = CASE WHEN call_started_at IS NULL THEN last_error
                      ELSE 'claim expired after the provider call began (worker lost); not re-sent automatically' END,
    claim_token = NULL, lease_expires_at = NULL, updated_at = now()
WHERE status = 'sending' AND lease_expires_at < now()
RETURNING campaign_id, status, batch_number
"""


@dataclass
class SweepReport:
    started: list = field(default_factory=list)
    released: int = 0
    unknown: int = 0
    redispatched: dict = field(default_factory=dict)
    finalised: list = field(default_factory=list)


def sweep():
    report = SweepReport()
    now = timezone.now()

    for campaign_id, when in Campaign.objects.filter(
        status=S.SCHEDULED, scheduled_at__lte=now + timedelta(seconds=2 * settings.SWEEP_INTERVAL_SECONDS)
    ).values_list("id", "scheduled_at"):
        with transaction.atomic():
            enqueue_start(campaign_id, eta=when if when > now else None)
        report.started.append(campaign_id)

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(RECOVER_EXPIRED_CLAIMS)
            recovered = cursor.fetchall()
        unknown_by_campaign, batches_by_campaign = {}, {}
        for campaign_id, status, batch_number in recovered:
            if status == DeliveryLog.Status.UNKNOWN:
                unknown_by_campaign[campaign_id] = unknown_by_campaign.get(campaign_id, 0) + 1
            else:
                batches_by_campaign.setdefault(campaign_id, set()).add(batch_number)
        for campaign_id, count in unknown_by_campaign.items():
            Campaign.objects.filter(pk=campaign_id).update(unknown_count=F("unknown_count") + count)
        report.unknown = sum(unknown_by_campaign.values())
        report.released = len(recovered) - report.unknown
        live = set(Campaign.objects.filter(pk__in=batches_by_campaign, status=S.IN_PROGRESS).values_list("id", flat=True))
        for campaign_id in live:
            report.redispatched[campaign_id] = dispatch_batches(campaign_id, batches_by_campaign[campaign_id])

    stalled_before = now - timedelta(seconds=settings.SWEEP_STALL_SECONDS)
    for campaign_id in Campaign.objects.filter(status=S.IN_PROGRESS).filter(
        Q(last_progress_at__lt=stalled_before) | Q(last_progress_at__isnull=True)
    ).values_list("id", flat=True):
        if campaign_id in report.redispatched:
            continue
        with transaction.atomic():
            count = dispatch_batches(campaign_id, pending_batch_numbers(campaign_id))
            # Count the dispatch as progress, so a slow campaign is not flooded with copies every sweep.
            Campaign.objects.filter(pk=campaign_id).update(last_progress_at=now)
        if count:
            report.redispatched[campaign_id] = count

    for campaign_id in Campaign.objects.filter(status=S.IN_PROGRESS).values_list("id", flat=True):
        if finalize_if_done(campaign_id):
            report.finalised.append(campaign_id)

    if report.released or report.unknown or report.redispatched or report.finalised:
        logger.warning("Sweep: released %s expired claims to pending, marked %s unknown, re-dispatched %s, "
                       "finalised %s", report.released, report.unknown, report.redispatched, report.finalised)
    return report
