import pytest

from mailer_project.celery import app


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


def test_a_real_worker_consumes_a_real_task_through_redis(start_worker, clean_broker):
    from campaigns.operations import health
    from campaigns.tasks.scheduler import heartbeat

    assert health.last_scheduler_heartbeat() is None
    start_worker(["scheduler"], concurrency=1)
    result = heartbeat.delay()
    beat = result.get(timeout=30)
    assert health.last_scheduler_heartbeat() == beat
    assert beat["host"]


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
