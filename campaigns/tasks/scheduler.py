"""Tasks on the `scheduler` queue: deciding what to send and when."""

from celery import shared_task

from campaigns import ab_tests, health
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


@shared_task
def send_ab_winner(campaign_id):
    return ab_tests.send_winner(campaign_id)
