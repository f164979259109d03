"""SendGrid Event Webhook benchmark: signed batches of 1,000 events POSTed to /webhooks/sendgrid/ on a
real gunicorn, against a campaign of 100k delivery logs, next to a baseline measured in the same run.

    .venv/bin/python scripts/devstack.py exec .venv/bin/python benchmarks/webhook_bench.py
    ... benchmarks/webhook_bench.py --logs 100000 --batches 30 --rounds 3 --clients 2

(`scripts/devstack.py exec` gives it a throwaway PostgreSQL and Redis as DATABASE_URL / REDIS_URL; it
migrates that database itself.)

Each round resets the delivery logs' event timestamps, then POSTs --batches batches of 1,000 events
(a realistic mix: processed, delivered, opens, clicks, deferrals, bounces, spam reports, unsubscribes,
5% of them retries of events already sent) from --clients threads, each batch signed the way SendGrid
signs it (ECDSA P-256 over timestamp + body). The figure is events per second over the whole round,
signature checks, JSON, de-duplication, matching, updates, counters and suppressions included; the
round's counters are checked against the events sent. Baseline: the same kind of events applied one
at a time with the ORM (get_or_create of the event id, a conditional update per event, a counter
update), in process, i.e. without even the HTTP cost.

The last line is `events_per_sec=N` (median of the rounds).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailer_project.settings")
os.environ.setdefault("DEBUG", "True")

from localservers.ports import free_port  # noqa: E402

BATCH = 1000
# (event, share of a batch)
MIX = [("processed", 0.22), ("delivered", 0.25), ("open", 0.28), ("click", 0.10), ("deferred", 0.04),
       ("bounce", 0.04), ("spamreport", 0.02), ("unsubscribe", 0.02), ("dropped", 0.03)]
RETRY_SHARE = 0.05
FIRST_OCCURRENCE = {"delivered": "delivered_count", "open": "opened_count", "click": "clicked_count",
                    "bounce": "bounced_count", "spamreport": "complained_count", "unsubscribe": "unsubscribed_count"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=int, default=100_000, help="delivery logs in the campaign")
    parser.add_argument("--batches", type=int, default=30, help="batches of 1,000 events per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2, help="concurrent POSTing threads (and gunicorn workers)")
    parser.add_argument("--baseline-events", type=int, default=3000)
    args = parser.parse_args(argv)
    if "DATABASE_URL" not in os.environ:
        sys.exit("Set DATABASE_URL, or run under: python scripts/devstack.py exec python benchmarks/webhook_bench.py")

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    os.environ["SENDGRID_WEBHOOK_PUBLIC_KEY"] = public
    # The events' times are random within an hour, so some opens would fall within seconds of their
    # delivery and count as machine opens; the check below expects every open to be a person's.
    os.environ["MACHINE_OPEN_SECONDS"] = "0"

    import django
    django.setup()
    from django.core.management import call_command
    call_command("migrate", "--noinput", verbosity=0)

    campaign_id, first_id = create_campaign(args.logs)
    print(f"== campaign {campaign_id}: {args.logs:,} delivery logs", flush=True)
    port = free_port()
    server = start_gunicorn(port, args.clients)
    try:
        rates = []
        for number in range(1, args.rounds + 1):
            reset(campaign_id)
            batches, expected = make_batches(campaign_id, first_id, args.logs, args.batches, f"r{number}")
            signed = [sign(key, body) for body in batches]
            began = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                results = list(pool.map(lambda request: post(port, *request), signed))
            elapsed = time.perf_counter() - began
            events = sum(result["received"] for result in results)
            check(campaign_id, results, expected)
            rates.append(events / elapsed)
            print(f"   round {number}: {events:,} events in {elapsed:.2f} s = {rates[-1]:,.0f} events/s "
                  f"({len(results)} requests, {args.clients} clients)", flush=True)
    finally:
        server.terminate()
        server.wait(30)

    reset(campaign_id)
    baseline = naive_baseline(campaign_id, first_id, args.logs, args.baseline_events)
    median = statistics.median(rates)
    print(f"== baseline, one event at a time with the ORM (in process): {baseline:,.0f} events/s")
    print(f"== webhook over HTTP, median of {len(rates)} rounds: {median:,.0f} events/s "
          f"({median / baseline:.1f}x the baseline)")
    print(f"events_per_sec={median:.0f}")


def create_campaign(logs):
    from django.db import connection

    from campaigns.models import Campaign

    campaign = Campaign.objects.create(name="webhook bench", subject="s", html_body="{{ unsubscribe_url }}",
                                       status=Campaign.Status.COMPLETED, total_recipients=logs, sent_count=logs)
    with connection.cursor() as cursor:
        cursor.execute("""
            INSERT INTO campaigns_recipient (campaign_id, email, first_name, last_name, data)
            SELECT %(c)s, 'user' || n || '@example.com', '', '', '{}'::jsonb FROM generate_series(1, %(n)s) n""",
                       {"c": campaign.pk, "n": logs})
        cursor.execute("""
            INSERT INTO campaigns_deliverylog (campaign_id, recipient_id, email, status, batch_number, provider,
                provider_message_id, attempts, last_error, sent_at, updated_at)
            SELECT r.campaign_id, r.id, r.email, 'sent', 0, 'sendgrid', 'msg' || (r.id / 1000), 1, '', now(), now()
            FROM campaigns_recipient r WHERE r.campaign_id = %(c)s ORDER BY r.id""", {"c": campaign.pk})
        cursor.execute("SELECT min(id) FROM campaigns_deliverylog WHERE campaign_id = %s", [campaign.pk])
        first_id = cursor.fetchone()[0]
        cursor.execute("VACUUM ANALYZE campaigns_deliverylog")
    return campaign.pk, first_id


def reset(campaign_id):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("""UPDATE campaigns_deliverylog SET delivered_at = NULL, opened_at = NULL, clicked_at = NULL,
                          bounced_at = NULL, complained_at = NULL, unsubscribed_at = NULL, last_error = ''
                          WHERE campaign_id = %s""", [campaign_id])
        cursor.execute("""UPDATE campaigns_campaign SET delivered_count = 0, opened_count = 0, clicked_count = 0,
                          bounced_count = 0, complained_count = 0, unsubscribed_count = 0 WHERE id = %s""",
                       [campaign_id])
        cursor.execute("TRUNCATE campaigns_suppression, campaigns_webhook_event")
        cursor.execute("VACUUM ANALYZE campaigns_deliverylog")


def make_batches(campaign_id, first_id, logs, count, prefix):
    """COUNT JSON bodies of BATCH events, and the counters they must produce (distinct recipients per kind)."""
    rng = random.Random(prefix)
    kinds = [kind for kind, share in MIX for _ in range(round(share * 100))]
    now = int(time.time())
    sent, bodies, expected = [], [], {counter: set() for counter in FIRST_OCCURRENCE.values()}
    for b in range(count):
        events = []
        for i in range(BATCH):
            if sent and rng.random() < RETRY_SHARE:
                events.append(rng.choice(sent))  # SendGrid re-delivering an event we already have
                continue
            kind = rng.choice(kinds)
            delivery = first_id + rng.randrange(logs)
            event = {"email": f"user{delivery - first_id + 1}@example.com", "timestamp": now - rng.randrange(3600),
                     "event": kind, "sg_event_id": f"{prefix}-{b}-{i}", "sg_message_id": "msg.filter",
                     "campaign_id": str(campaign_id), "delivery_id": str(delivery)}
            if kind == "bounce":
                event.update(type="bounce" if rng.random() < 0.7 else "blocked", reason="550 5.1.1 unknown user")
            elif kind == "click":
                event["url"] = "https://shop.example.com/sale"
            elif kind == "deferred":
                event["response"] = "421 try again later"
            elif kind == "dropped":
                event["reason"] = "Bounced Address"
            events.append(event)
            sent.append(event)
            if kind in FIRST_OCCURRENCE:
                expected[FIRST_OCCURRENCE[kind]].add(delivery)
        bodies.append(json.dumps(events).encode())
    return bodies, {counter: len(ids) for counter, ids in expected.items()}


def sign(key, body):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    timestamp = str(int(time.time()))
    signature = base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    return body, {"Content-Type": "application/json", "X-Twilio-Email-Event-Webhook-Signature": signature,
                  "X-Twilio-Email-Event-Webhook-Timestamp": timestamp}


def post(port, body, headers):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", "/webhooks/sendgrid/", body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"webhook answered {response.status}: {payload[:300]!r}")
        return json.loads(payload)
    finally:
        connection.close()


def check(campaign_id, results, expected):
    """The counters must equal the distinct recipients per kind of event sent: no event lost or doubled."""
    from campaigns.models import Campaign

    counters = Campaign.objects.filter(pk=campaign_id).values(*expected).get()
    if counters != expected:
        raise SystemExit(f"counters {counters} != expected {expected}")
    duplicates = sum(result["duplicates"] for result in results)
    if not duplicates:
        raise SystemExit("no retried event was recognised as a duplicate")


def naive_baseline(campaign_id, first_id, logs, events):
    """The same kind of events applied one by one with the ORM: dedup row, conditional update, counter."""
    from django.db import connection, transaction
    from django.db.models import F
    from django.utils import timezone

    from campaigns.models import Campaign, DeliveryLog

    bodies, _ = make_batches(campaign_id, first_id, logs, max(1, events // BATCH), "baseline")
    fields = {"delivered": ("delivered_at", "delivered_count"), "open": ("opened_at", "opened_count"),
              "click": ("clicked_at", "clicked_count"), "bounce": ("bounced_at", "bounced_count"),
              "spamreport": ("complained_at", "complained_count"),
              "unsubscribe": ("unsubscribed_at", "unsubscribed_count")}
    began = time.perf_counter()
    applied = 0
    for body in bodies:
        for event in json.loads(body):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("INSERT INTO campaigns_webhook_event (event_id) VALUES (%s) ON CONFLICT DO NOTHING",
                               [event["sg_event_id"]])
                applied += 1
                if not cursor.rowcount or event["event"] not in fields:
                    continue
                column, counter = fields[event["event"]]
                changed = DeliveryLog.objects.filter(pk=int(event["delivery_id"]), campaign_id=campaign_id,
                                                     **{f"{column}__isnull": True}).update(**{column: timezone.now()})
                if changed:
                    Campaign.objects.filter(pk=campaign_id).update(**{counter: F(counter) + 1})
    return applied / (time.perf_counter() - began)


def start_gunicorn(port, workers):
    env = dict(os.environ, DB_CONN_MAX_AGE="60")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "mailer_project.wsgi", "-b", f"127.0.0.1:{port}",
         "-w", str(workers), "--log-level", "warning"], cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("gunicorn did not start")


if __name__ == "__main__":
    main()
