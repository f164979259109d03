"""The Celery app: four queues, routed by task module.

`scheduler` decides what to send and when (starting campaigns, the sweep, completion reports);
`senders` only sends batches and is the queue to scale out; `imports` reads uploaded recipient files,
which can take minutes, so that they never hold up the other two; `bounces` reads the sending accounts'
bounce mailboxes, so that a slow mail server holds up nothing else; `webhooks` delivers outbound
webhooks, whose receivers may be slow or down, so that they never delay sending.
"""

import os

from celery import Celery
from celery.signals import beat_init, task_prerun
from kombu import Queue

from mailer_project.broker import use_for_redis_urls

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailer_project.settings")
# Before any broker connection: a worker that loses Redis reconnects rather than exits (mailer_project/broker.py).
use_for_redis_urls()

app = Celery("mailer_project")
app.config_from_object("django.conf:settings", namespace="CELERY")

SCHEDULER_QUEUE = "scheduler"
SENDERS_QUEUE = "senders"
IMPORTS_QUEUE = "imports"
BOUNCES_QUEUE = "bounces"
WEBHOOKS_QUEUE = "webhooks"

app.conf.update(
    task_queues=(Queue(SCHEDULER_QUEUE), Queue(SENDERS_QUEUE), Queue(IMPORTS_QUEUE), Queue(BOUNCES_QUEUE),
                 Queue(WEBHOOKS_QUEUE)),
    task_default_queue=SCHEDULER_QUEUE,
    task_routes={
        "campaigns.tasks.scheduler.*": {"queue": SCHEDULER_QUEUE},
        "campaigns.tasks.imports.*": {"queue": IMPORTS_QUEUE},
        "campaigns.tasks.senders.*": {"queue": SENDERS_QUEUE},
        "campaigns.tasks.bounces.*": {"queue": BOUNCES_QUEUE},
        "campaigns.tasks.webhooks.*": {"queue": WEBHOOKS_QUEUE},
    },
    # A task is acknowledged only when it has finished, so a killed worker's task is redelivered;
    # every task is therefore written to be safe to run twice (imports opt out: see tasks/imports.py).
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_soft_time_limit=300,
    task_time_limit=360,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=3600,
    task_track_started=True,
    worker_send_task_events=True,
    task_send_sent_event=True,
    broker_connection_retry_on_startup=True,
    # With acks_late, an unacknowledged task is redelivered after this long; longer than any task.
    broker_transport_options={"visibility_timeout": 3600},
    beat_scheduler="django_celery_beat.schedulers:DatabaseScheduler",
    worker_hijack_root_logger=False,
)

app.autodiscover_tasks()


@beat_init.connect
def beat_queues_without_task_sent_events(sender=None, **kwargs):
    """Beat's own process queues the periodic tasks without a task-sent event: each shows in Flower once a
    worker receives it, and the sweep and the heartbeat, which send no events (campaigns/tasks/scheduler.py),
    never show at all, rather than being most of the task history."""
    sender.app.conf.task_send_sent_event = False


@task_prerun.connect
def drop_broken_database_connections(**kwargs):
    """With connections reused across tasks, close any that broke or outlived CONN_MAX_AGE."""
    from django.db import close_old_connections

    close_old_connections()
