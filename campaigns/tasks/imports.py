"""Tasks on the `scheduler` queue that import recipient files uploaded in the admin."""

import logging

from celery import shared_task

from campaigns.importing import ImportRefused
from campaigns.importing.progress import DatabaseProgress
from campaigns.importing.service import import_recipients
from campaigns.models import RecipientImport

logger = logging.getLogger(__name__)


# A million-row workbook takes longer than the default limits; the import rolls back if it is killed.
@shared_task(soft_time_limit=1800, time_limit=1900)
def import_recipients_file(recipient_import_id: int, check_mx: bool = False) -> dict | None:
    record = RecipientImport.objects.filter(pk=recipient_import_id).first()
    if record is None or record.status == RecipientImport.Status.SUCCEEDED:
        return None  # deleted, or a redelivery of a finished import
    progress = DatabaseProgress(record.pk)
    try:
        report = import_recipients(record, progress=progress, check_mx=check_mx)
    except ImportRefused as refusal:
        logger.info("Import %s refused: %s", record.pk, refusal)
        return {"error": str(refusal)}
    finally:
        progress.close()
    return {"summary": report.summary_line()}
