"""Tasks on the `scheduler` queue: deciding what to send and when."""

from celery import shared_task

from campaigns import health
from campaigns.sending import pipeline, sweep as sweeping


@shared_task
def heartbeat():
    return health.record_scheduler_heartbeat()


@shared_task
def start_campaign(campaign_id):
    return pipeline.start_campaign(campaign_id)


@shared_task
def sweep():
    return sweeping.sweep().__dict__
