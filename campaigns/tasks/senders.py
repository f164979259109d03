"""Tasks on the `senders` queue: they only send batches."""

from celery import shared_task
from django.conf import settings

from campaigns.sending import pipeline

# Shorter than the claim's lease, so a live batch never loses its claim to the sweep.
LEASE = settings.SEND_LEASE_SECONDS


# The outcome lives in the delivery logs; Flower still shows each return value from task events.
@shared_task(soft_time_limit=int(LEASE * 0.8), time_limit=int(LEASE * 0.9), ignore_result=True)
def send_batch(campaign_id, batch_number):
    return pipeline.send_batch(campaign_id, batch_number).__dict__
