"""A Celery worker that stops at one step of a batch (or of a campaign's start), so that a test can SIGKILL it there. Tests only.

    python -m tests.support.crashing_worker -A mailer_project worker -Q senders ...   (celery's own arguments)

CRASH_AT names the step (one of STEPS). The first time a batch reaches it, the worker writes what is
in flight to CRASH_SIGNAL_FILE (JSON) and blocks there until it is killed. The production code has no
flag for this: the steps are patched here, before the worker starts (its pool processes are forked
from this one and inherit the patches).
"""

import json
import os
import sys
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailer_project.settings")
django.setup()

from django.db import transaction  # noqa: E402

from campaigns.sending import ledger, pipeline, ratelimit  # noqa: E402
from campaigns.sending.providers import smtp  # noqa: E402


def stop_here(**in_flight):
    """Tell the test where this worker stands, then block until it is killed."""
    path = os.environ["CRASH_SIGNAL_FILE"]
    with open(path + ".tmp", "w") as f:
        json.dump({"step": os.environ["CRASH_AT"], **in_flight}, f)
    os.replace(path + ".tmp", path)
    while True:
        time.sleep(3600)


def _emails(ids):
    from campaigns.models import DeliveryLog

    return sorted(DeliveryLog.objects.filter(pk__in=list(ids)).values_list("email", flat=True))


def after_claim():
    original = pipeline.send_claimed

    def send_claimed(campaign, batch_number, claimed, batch_ledger):
        stop_here(claimed=[row[3] for row in claimed])
        return original(campaign, batch_number, claimed, batch_ledger)
    pipeline.send_claimed = send_claimed


def rate_limit_wait():
    def wait(seconds):
        stop_here(waiting=seconds)
    ratelimit.wait = wait


def after_call_began():
    original = ledger.BatchLedger.call_began

    def call_began(self, delivery_ids):
        owned = original(self, delivery_ids)
        stop_here(marked=_emails(owned))
    ledger.BatchLedger.call_began = call_began


def mid_data():
    """In the middle of the DATA of the K-th message (CRASH_K, default 3) of the worker's first batch."""
    original = smtp.SmtpSession.send_content
    sent = {"n": 0}

    def send_content(self, data):
        sent["n"] += 1
        if sent["n"] == int(os.environ.get("CRASH_K", "3")):
            self.conn.send(data[:len(data) // 2])
            stop_here(message=sent["n"])
        return original(self, data)
    smtp.SmtpSession.send_content = send_content


def before_results():
    """The provider accepted (SMTP: a chunk; SendGrid: the request); nothing of it is written yet."""
    original = ledger.BatchLedger.write

    def write(self, rows, *args, **kwargs):
        if any(row[1] == "sent" for row in rows):
            stop_here(accepted=_emails(row[0] for row in rows))
        return original(self, rows, *args, **kwargs)
    ledger.BatchLedger.write = write


def while_writing():
    """The results' UPDATE has run in the transaction, which has not committed."""
    original = ledger.BatchLedger.write

    def write(self, rows, *args, **kwargs):
        with transaction.atomic():
            original(self, rows, *args, **kwargs)
            if any(row[1] == "sent" for row in rows):
                stop_here(writing=_emails(row[0] for row in rows))
    ledger.BatchLedger.write = write


def between_start_chunks():
    """A scheduler worker: after the CRASH_K-th chunk (default 2) of a campaign's start committed, before
    the next one (the start's first chunk commits with the start itself)."""
    original = pipeline.create_start_chunk
    made = {"n": 0}

    def create_start_chunk(campaign_id, *args, **kwargs):
        more = original(campaign_id, *args, **kwargs)
        made["n"] += 1
        if more and made["n"] >= int(os.environ.get("CRASH_K", "2")) and not transaction.get_connection().in_atomic_block:
            from campaigns.models import Campaign, DeliveryLog

            stop_here(cursor=Campaign.objects.get(pk=campaign_id).start_cursor,
                      rows=DeliveryLog.objects.filter(campaign_id=campaign_id).count())
        return more
    pipeline.create_start_chunk = create_start_chunk


STEPS = {
    "between_start_chunks": between_start_chunks,
    "after_claim": after_claim,
    "rate_limit_wait": rate_limit_wait,
    "after_call_began": after_call_began,
    "mid_data": mid_data,
    "before_results": before_results,
    "while_writing": while_writing,
}

if __name__ == "__main__":
    step = os.environ.get("CRASH_AT")
    if step:
        STEPS[step]()
    from celery.__main__ import main

    sys.argv[0] = "celery"
    sys.exit(main())
