"""Test-only fault injection: mailer_project's Celery app, in which half the provider requests, at
random, are held up SLOW_REQUEST_SECONDS (default 0.4 s) between taking their place under the rate
limit and leaving, as a busy database or network holds them up. Production code has no such switch.

    celery -A tests.sending.slow_requests_app worker -Q senders ...
"""

import os
import random
import time

from celery.signals import worker_process_init

from mailer_project.celery import app  # noqa: F401  (the app this worker runs)


@worker_process_init.connect
def hold_up_half_the_requests(**kwargs):
    from campaigns.sending import ledger

    delay = float(os.environ.get("SLOW_REQUEST_SECONDS", "0.4"))
    call_began = ledger.BatchLedger.call_began
    chance = random.Random(os.getpid())  # pool processes are forked: each its own sequence

    def slow_call_began(self, delivery_ids):
        if chance.random() < 0.5:
            time.sleep(delay)
        return call_began(self, delivery_ids)
    ledger.BatchLedger.call_began = slow_call_began
