import collections
import threading
import types

import pytest
from django.core.files.base import ContentFile

from mailer_project.celery import app
from tests.sending.conftest import wait_until


def route_of(task_name):
    return app.amqp.router.route({}, task_name)["queue"].name


def test_every_registered_task_of_ours_lands_on_its_modules_queue():
    app.loader.import_default_modules()
    ours = [name for name in app.tasks if name.startswith("campaigns.")]
    assert ours, "no campaigns tasks registered"
    for name in ours:
        expected = name.split(".")[2]  # campaigns.tasks.<module>.<task>
        expected = {"imports": "imports", "senders": "senders", "bounces": "bounces",
                    "webhooks": "webhooks"}.get(expected, "scheduler")
        assert route_of(name) == expected, name


def test_routes_are_by_module():
    assert route_of("campaigns.tasks.senders.anything") == "senders"
    assert route_of("campaigns.tasks.scheduler.anything") == "scheduler"
    assert route_of("campaigns.tasks.imports.anything") == "imports"
    assert route_of("campaigns.tasks.bounces.anything") == "bounces"
    assert route_of("campaigns.tasks.webhooks.anything") == "webhooks"
    assert route_of("some.other.task") == "scheduler"  # never the unconsumed default 'celery' queue


def test_celery_is_configured_for_safe_redelivery():
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.task_time_limit and conf.task_soft_time_limit < conf.task_time_limit
    assert conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"


def test_imports_are_never_redelivered_and_have_their_own_time_limit(settings):
    from campaigns.tasks.imports import import_recipients_file

    assert import_recipients_file.acks_late is False and import_recipients_file.reject_on_worker_lost is False
    assert import_recipients_file.soft_time_limit == settings.IMPORT_TIME_LIMIT_SECONDS
    assert import_recipients_file.time_limit > import_recipients_file.soft_time_limit


class EventLog:
    """Every Celery event, as Flower receives them: a Receiver on the test broker, in a thread."""

    def __init__(self):
        self.events = []
        self.receiver = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        with app.connection_for_read() as connection:
            self.receiver = app.events.Receiver(connection, handlers={"*": self.events.append})
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def wait_for(self, check, timeout=60):
        wait_until(lambda: any(check(event) for event in list(self.events)), timeout=timeout)
        return next(event for event in list(self.events) if check(event))

    def tasks(self, name):
        """{uuid: [events]} of the tasks named NAME (Flower's task list, before it merges them)."""
        ids = {e["uuid"] for e in self.events if e.get("name") == name}
        return {uuid: [e for e in self.events if e.get("uuid") == uuid] for uuid in ids}

    def stop(self):
        if self.receiver is not None:
            self.receiver.should_stop = True
        self.thread.join(timeout=10)


@pytest.fixture
def event_log(clean_broker):
    log = EventLog()
    yield log
    log.stop()


def test_flower_reads_named_tasks_and_real_failures_and_never_the_sweep_or_heartbeat(
        start_worker, event_log, settings, tmp_path):
    """Issue 25 item 15, with a real worker sending its events: send_batch and start_campaign read
    "campaign N «name», batch B"; a failed import is a FAILURE (not retried, its reason kept); the sweep and
    the heartbeat, queued as beat queues them, never reach Flower (they were 71 % of an idle hour's events)."""
    from campaigns.audience.importing import uploads
    from campaigns.operations import health
    from campaigns.sending import dispatch
    from campaigns.tasks.scheduler import heartbeat, sweep
    from mailer_project.celery import beat_queues_without_task_sent_events
    from tests.support.factories import CampaignFactory

    settings.MEDIA_ROOT = str(tmp_path / "media")
    start_worker(["scheduler", "imports", "senders"], concurrency=1, MEDIA_ROOT=settings.MEDIA_ROOT)
    event_log.wait_for(lambda e: e["type"].startswith("worker-"))  # the receiver hears the worker

    sends_sent_events = app.conf.task_send_sent_event
    try:
        beat_queues_without_task_sent_events(sender=types.SimpleNamespace(app=app))  # as in beat's process
        quiet = [sweep.apply_async(), heartbeat.apply_async()]
    finally:
        app.conf.task_send_sent_event = sends_sent_events
    campaign = CampaignFactory(name="Spring sale")
    dispatch.enqueue_start(campaign.pk)  # a draft: the task does nothing, after the sweep and heartbeat
    dispatch.dispatch_batches(campaign.pk, [35])
    uploads.queue_import(None, campaign, ContentFile(b"email\n", name="empty.csv"), "empty.csv")

    started = event_log.wait_for(lambda e: e["type"] == "task-succeeded" and e["uuid"] in event_log.tasks(
        "campaigns.tasks.scheduler.start_campaign"))
    batch = event_log.wait_for(lambda e: e["type"] == "task-received" and e["name"].endswith("send_batch"))
    assert batch["args"] == f"campaign {campaign.pk} «Spring sale», batch 35"
    assert batch["kwargs"] == f"{{'campaign_id': {campaign.pk}, 'batch_number': 35}}"
    [start_events] = event_log.tasks("campaigns.tasks.scheduler.start_campaign").values()
    assert {e["args"] for e in start_events if "args" in e} == {f"campaign {campaign.pk} «Spring sale»"}

    failed = event_log.wait_for(lambda e: e["type"] == "task-failed")
    [import_id] = event_log.tasks("campaigns.tasks.imports.import_recipients_file")
    assert failed["uuid"] == import_id and "ImportFailed" in failed["exception"]
    assert "header row but no data rows" in failed["exception"]
    assert app.AsyncResult(import_id).state == "FAILURE"
    assert not [e for e in event_log.events if e["type"] == "task-retried"]
    record = campaign.imports.get()
    assert record.status == "failed" and record.error == "The file has a header row but no data rows."

    # The heartbeat and the sweep ran before start_campaign (one queue, one process), and sent nothing.
    assert health.last_scheduler_heartbeat()["host"]
    assert started["timestamp"] > 0
    quiet_ids = {result.id for result in quiet}
    assert not [e for e in event_log.events if e.get("uuid") in quiet_ids]
    names = collections.Counter(e["name"] for e in event_log.events if e["type"] == "task-received")
    assert names == {"campaigns.tasks.scheduler.start_campaign": 1, "campaigns.tasks.senders.send_batch": 1,
                     "campaigns.tasks.imports.import_recipients_file": 1}, names


@pytest.mark.django_db
def test_periodic_tasks_are_registered_idempotently_and_keep_staff_changes():
    from django_celery_beat.models import PeriodicTask

    from campaigns.operations.periodic import PERIODIC_TASKS, register_periodic_tasks

    staff_task = PeriodicTask.objects.create(name="Staff's own task", task="campaigns.tasks.scheduler.heartbeat",
                                             interval=PeriodicTask.objects.first().interval)
    PeriodicTask.objects.filter(name__in=PERIODIC_TASKS).update(enabled=False)  # staff switched ours off
    register_periodic_tasks()
    register_periodic_tasks()
    ours = PeriodicTask.objects.filter(name__in=PERIODIC_TASKS)
    assert ours.count() == len(PERIODIC_TASKS)
    assert not any(t.enabled for t in ours)
    assert PeriodicTask.objects.filter(pk=staff_task.pk).exists()
