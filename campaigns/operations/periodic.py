"""Periodic tasks, registered in django-celery-beat's tables after every `migrate`.

Registration is idempotent: rows are matched by name and updated, staff's own rows are never
touched, and a task staff disabled in the admin stays disabled.
"""

import logging

from django.conf import settings

logger = logging.getLogger(__name__)

# name -> (task, every N seconds)
PERIODIC_TASKS = {
    "Scheduler heartbeat": ("campaigns.tasks.scheduler.heartbeat", 60),
    "Sweep: start due campaigns, recover stale claims": ("campaigns.tasks.scheduler.sweep",
                                                         settings.SWEEP_INTERVAL_SECONDS),
    "Imports: remove finished uploads, fail abandoned imports": ("campaigns.tasks.imports.tidy_uploads", 3600),
    "Bounces: read the sending accounts' bounce mailboxes": ("campaigns.tasks.bounces.poll_bounce_mailboxes", 60),
    "Webhooks: deliver due messages and retries": ("campaigns.tasks.webhooks.deliver_webhooks", 60),
    "API: forget expired Idempotency-Keys": ("campaigns.tasks.scheduler.forget_idempotency_keys", 3600),
}


def register_periodic_tasks(sender=None, using="default", **kwargs):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    for name, (task, seconds) in PERIODIC_TASKS.items():
        interval, _ = IntervalSchedule.objects.using(using).get_or_create(
            every=seconds, period=IntervalSchedule.SECONDS
        )
        _, created = PeriodicTask.objects.using(using).update_or_create(
            name=name, defaults={"task": task, "interval": interval}
        )
        if created:
            logger.info("Registered periodic task %r (%s every %ss)", name, task, seconds)
