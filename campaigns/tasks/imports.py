"""Tasks on the `imports` queue: recipient files uploaded in the admin, their hourly clean-up, and
preflights (every recipient of a campaign rendered before it is sent).

Imports have a queue and a worker of their own so that a long file never delays starting a campaign;
a preflight is the same kind of work (a long read of one campaign's recipients, for staff waiting on a
progress bar), so it shares that queue rather than slowing the scheduler or the senders.
"""

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from celery.signals import task_failure
from django.conf import settings

from campaigns.audience.importing import uploads
from campaigns.audience.importing.service import time_limit_reason
from campaigns.exceptions import ImportFailed
from campaigns.message import preflight


# Acknowledged when it starts: an import whose worker died is marked failed, never run again by a
# redelivery (the transaction rolled back, so staff simply upload again). A failed import raises
# ImportFailed once its record says why: the task is a FAILURE, never retried; `throws` has the worker log
# it as an expected failure, without a traceback.
@shared_task(acks_late=False, reject_on_worker_lost=False, throws=(ImportFailed,),
             soft_time_limit=settings.IMPORT_TIME_LIMIT_SECONDS,
             time_limit=settings.IMPORT_TIME_LIMIT_SECONDS + uploads.HARD_TIME_LIMIT_MARGIN_SECONDS)
def import_recipients_file(recipient_import_id: int, check_mx: bool = False) -> dict | None:
    return uploads.import_upload(recipient_import_id, check_mx)


@shared_task
def tidy_uploads() -> dict:
    return uploads.tidy_uploads()


# Acknowledged when it starts, like an import: a run whose worker died stays "running" and staff start another.
@shared_task(acks_late=False)
def run_preflight(preflight_run_id: int) -> dict | None:
    return preflight.run_preflight(preflight_run_id)


@task_failure.connect
def record_why_an_import_stopped(sender=None, args=(), kwargs=None, exception=None, **extra):
    """Sent by the worker's pool process (soft time limit) or by its parent (hard limit, lost process)."""
    if sender is None or sender.name != import_recipients_file.name:
        return
    if isinstance(exception, (SoftTimeLimitExceeded, TimeLimitExceeded)):
        reason = time_limit_reason()
    elif isinstance(exception, WorkerLostError):
        reason = uploads.WORKER_STOPPED
    else:
        return  # the import itself recorded what went wrong
    recipient_import_id = args[0] if args else (kwargs or {}).get("recipient_import_id")
    uploads.mark_stopped(recipient_import_id, reason)
