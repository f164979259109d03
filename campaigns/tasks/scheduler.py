"""Tasks on the `scheduler` queue: deciding what to send and when.

The heartbeat (every minute) and the sweep (every SWEEP_INTERVAL_SECONDS) send no task events and keep no
result: they would otherwise be most of Flower's task history (docs/flower-monitoring.md); their work shows
in /readyz and in what the sweep starts and recovers. Beat queues them without a task-sent event
(mailer_project/celery.py)."""

from celery import shared_task

from campaigns.api import idempotency
from campaigns.experiments import ab_tests
from campaigns.notifications import completion_report
from campaigns.operations import health
from campaigns.sending import account_check, pipeline
from campaigns.sending import sweep as sweeping


QUIET = {"send_events": False, "ignore_result": True}


@shared_task(**QUIET)
def heartbeat():
    return health.record_scheduler_heartbeat()


@shared_task
def start_campaign(campaign_id):
    return pipeline.start_campaign(campaign_id)


@shared_task(**QUIET)
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
