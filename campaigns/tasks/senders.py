"""Tasks on the `senders` queue: they only send batches."""

from celery import shared_task
from django.conf import settings

from campaigns.sending import pipeline

# The live batch renews its lease (campaigns.sending.ledger.Heartbeat), so the time limit is the
# batch's own and not tied to the lease.
LIMIT = settings.SEND_BATCH_TIME_LIMIT


# The outcome lives in the delivery logs; Flower still shows each return value from task events.
@shared_task(soft_time_limit=LIMIT, time_limit=int(LIMIT * 1.2), ignore_result=True)
def send_batch(campaign_id, batch_number):
    return pipeline.send_batch(campaign_id, batch_number).__dict__
