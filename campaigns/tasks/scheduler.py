"""Tasks on the `scheduler` queue: deciding what to send and when."""

from celery import shared_task

from campaigns import health


@shared_task
def heartbeat():
    return health.record_scheduler_heartbeat()
