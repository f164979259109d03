"""Tasks on the `scheduler` queue: deciding what to send and when."""

from celery import shared_task

from campaigns.api import idempotency
from campaigns.experiments import ab_tests
from campaigns.notifications import completion_report
from campaigns.operations import health
from campaigns.sending import account_check, pipeline
from campaigns.sending import sweep as sweeping


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


@shared_task
def check_account_connection(account_id):
    return account_check.run_check(account_id)


@shared_task
def send_completion_report(campaign_id):
    """Queued by campaigns.states once a campaign's completion, failure or cancellation commits."""
    return completion_report.send_completion_report(campaign_id)


@shared_task
def forget_idempotency_keys():
    """Hourly: Idempotency-Keys older than IDEMPOTENCY_KEY_HOURS, with their answers."""
    return idempotency.remove_expired()
