"""Files uploaded in the admin or the API: imported in the background, removed when they are no longer needed.

`queue_import` stores an upload and queues its import; `import_upload` is what the Celery task runs; `mark_stopped` records why a run ended without finishing
(a time limit, a lost worker); `tidy_uploads` is the hourly clean-up.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from campaigns.audience.importing.progress import DatabaseProgress
from campaigns.audience.importing.service import import_recipients, mark_failed
from campaigns.exceptions import CampaignError, ImportFailed, ImportRefused
from campaigns.models import Campaign, RecipientImport, campaign_label, quoted_name
from campaigns.security.logsafe import excerpt, for_log
from campaigns.webhooks import events as webhook_events

logger = logging.getLogger(__name__)

S = RecipientImport.Status
WORKER_STOPPED = ("The import worker stopped while reading this file, so nothing was imported; "
                  "upload the file again.")
# The hard limit leaves the soft one time to roll back and record the reason.
HARD_TIME_LIMIT_MARGIN_SECONDS = 60
IMPORT_TASK = "campaigns.tasks.imports.import_recipients_file"
IMPORTABLE_STATUSES = (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED)


def check_importable(campaign: Campaign) -> None:
    if campaign.status not in IMPORTABLE_STATUSES:
        raise CampaignError(f"Recipients can only be added to a draft or scheduled campaign; this one is "
                            f"{campaign.get_status_display().lower()}.")


def queue_import(user, campaign: Campaign, file, name: str, sheet: str = "", check_mx: bool = False) -> RecipientImport:
    """Store FILE (an uploaded or in-memory file) as a RecipientImport of CAMPAIGN and queue its import
    once the row is committed; its status and report are on the row."""
    check_importable(campaign)
    with transaction.atomic():
        record = RecipientImport.objects.create(campaign=campaign, file=file, original_name=name[:255],
                                                sheet=sheet or "", created_by=user)
        label = f"import {record.pk} of {quoted_name(name[:255])} into {campaign_label(campaign.pk, campaign.name)}"
        transaction.on_commit(lambda: current_app.send_task(
            IMPORT_TASK, kwargs={"recipient_import_id": record.pk, "check_mx": bool(check_mx)}, argsrepr=label))
    logger.info("Import %s into campaign %s queued by user %s", record.pk, campaign.pk, getattr(user, "pk", None))
    return record


def failed(recipient_import_id: int, reason) -> ImportFailed:
    """What an import's task raises once the import recorded REASON: a FAILURE in Flower, with a message
    made safe for its task list (which shows an exception's text as HTML)."""
    text = for_log(excerpt(reason, limit=300)).translate({ord("<"): "‹", ord(">"): "›", ord("&"): "+"})
    return ImportFailed(f"import {recipient_import_id}: {text}")


def import_upload(recipient_import_id: int, check_mx: bool = False) -> dict | None:
    """Import an uploaded file once. A run that finds its import already running is a second delivery
    of a run that died (the first one's transaction rolled back): the import is marked failed, not rerun.

    A failed import raises ImportFailed once its RecipientImport says why (its page shows that)."""
    record = RecipientImport.objects.filter(pk=recipient_import_id).first()
    if record is None or record.status in (S.SUCCEEDED, S.FAILED):
        return None  # deleted, or already finished
    if record.status == S.RUNNING:
        mark_stopped(record.pk, WORKER_STOPPED)
        raise failed(record.pk, WORKER_STOPPED)
    logger.info("Import %s into campaign %s started", record.pk, record.campaign_id)
    progress = DatabaseProgress(record.pk)
    try:
        report = import_recipients(record, progress=progress, check_mx=check_mx)
    except ImportRefused as refusal:
        logger.info("Import %s into campaign %s refused: %s", record.pk, record.campaign_id, for_log(refusal))
        webhook_events.record_import(record.pk, succeeded=False)
        raise failed(record.pk, refusal) from None
    finally:
        progress.close()
        remove_finished_uploads(record.pk)
    logger.info("Import %s into campaign %s succeeded: %s", record.pk, record.campaign_id, report.summary_line())
    webhook_events.record_import(record.pk, succeeded=True)
    return {"summary": report.summary_line()}


def mark_stopped(recipient_import_id: int, reason: str) -> None:
    """An import's run ended without finishing: mark it failed with REASON (unless it succeeded)."""
    if mark_failed(recipient_import_id, reason):
        logger.warning("Import %s stopped: %s", recipient_import_id, for_log(reason))
        webhook_events.record_import(recipient_import_id, succeeded=False)
    remove_finished_uploads(recipient_import_id)


def remove_finished_uploads(*ids: int) -> int:
    """Delete the uploaded files of finished imports (all of them, or those with the given ids) that are
    older than IMPORT_KEEP_UPLOADS_DAYS. The rejected-rows report stays."""
    cutoff = timezone.now() - timedelta(days=settings.IMPORT_KEEP_UPLOADS_DAYS)
    finished = RecipientImport.objects.filter(status__in=(S.SUCCEEDED, S.FAILED), finished_at__lte=cutoff)
    if ids:
        finished = finished.filter(pk__in=ids)
    removed = 0
    for record in finished.exclude(file=""):
        name = record.file.name
        record.file.delete(save=False)
        RecipientImport.objects.filter(pk=record.pk, file=name).update(file="")
        removed += 1
        logger.info("Import %s into campaign %s: uploaded file removed", record.pk, record.campaign_id)
    return removed


def fail_abandoned_imports() -> int:
    """Imports still running long after the task's hard time limit lost their worker with no one told."""
    limit = settings.IMPORT_TIME_LIMIT_SECONDS + 2 * HARD_TIME_LIMIT_MARGIN_SECONDS
    abandoned = RecipientImport.objects.filter(
        Q(started_at__lt=timezone.now() - timedelta(seconds=limit)) | Q(started_at__isnull=True),
        status=S.RUNNING)
    ids = list(abandoned.values_list("pk", flat=True))
    for recipient_import_id in ids:
        mark_stopped(recipient_import_id, WORKER_STOPPED)
    return len(ids)


def tidy_uploads() -> dict:
    return {"abandoned": fail_abandoned_imports(), "removed": remove_finished_uploads()}
