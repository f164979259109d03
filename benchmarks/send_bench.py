"""Sending benchmark: a whole campaign through real Celery workers to a local provider, timed from
`control.send_now()` to `completed`, checked for exactly-once delivery at the server, next to a
baseline measured in the same run against the same kind of server.

    make bench-send ARGS="--recipients 200000 --provider sendgrid"
    make bench-send ARGS="--recipients 50000 --provider smtp"

(`make bench-send` runs this under `scripts/devstack.py exec`, i.e. against a throwaway PostgreSQL
and Redis given as DATABASE_URL / REDIS_URL.)

- sendgrid: the fake SendGrid API (`campaigns.localservers.sendgrid_api`, no --render). Baseline: the
  same server's raw accept rate for the same batch payloads, POSTed from as many client processes as
  there were sender pool processes.
- smtp: the SMTP capture sink (`campaigns.localservers.smtp_sink`), maildir under var/bench/.
  Baselines: a plain smtplib loop (one connection, one `sendmail` per message) sending the very
  messages the pipeline delivered, and django-post_office (installed into .venv when missing, never a
  dependency) queuing the same rendered messages and delivering them with its own
  `send_queued_mail_until_done()`. Each phase gets a fresh sink with an empty maildir.

Exactly-once is checked at the server: duplicates = extra copies of any address; lost = recipients
the server never saw and whose delivery log is not failed or skipped. The last line is
`emails_per_sec=N duplicates=N lost=N`.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import http.client
import json
import logging
import multiprocessing
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DIR = ROOT / "var" / "bench"  # writes under /tmp were measured much slower on this machine
API_KEY = "SG.send-bench"
POST_OFFICE_VERSION = "3.12.0"
# The workers run as in production (DEBUG off: no query log, no debug cursor).
PRODUCTION_ENV = {"DEBUG": "False", "SECRET_KEY": "send-bench-not-a-secret", "LINK_SIGNING_KEY": "send-bench-links",
                  "ALLOWED_HOSTS": "127.0.0.1",
                  "FLOWER_PASSWORD": "send-bench", "SITE_URL": "https://mail.example.com"}
# High enough that the shared Redis token bucket never makes a batch wait: the run measures the pipeline.
UNCAPPED_RATE = "1000000"
LIMIT_NOTES = {"sendgrid": f"SENDGRID_RATE_LIMIT_PER_SEC raised to {UNCAPPED_RATE} so the limiter never waits",
               "smtp": "no SMTP rate limit (SMTP_RATE_LIMIT_PER_SEC=0, the default)"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=200_000)
    parser.add_argument("--provider", choices=("sendgrid", "smtp"), default="sendgrid")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="sender worker pool processes (default 4: two per core, as batches wait on I/O)")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--baseline-sample", type=int, default=None,
                        help="messages per baseline (default: 20000 for smtp, every recipient for sendgrid)")
    parser.add_argument("--post-office-processes", type=int, default=1,
                        help="processes for post_office's send_queued (its command's default is 1)")
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--tracking", action="store_true",
                        help="turn the campaign's open/click tracking on (the baselines send untracked messages)")
    parser.add_argument("--keep", action="store_true", help="keep var/bench/ (maildirs, records, logs)")
    parser.add_argument("--timeout", type=int, default=1800, help="give up on the campaign after this long")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--campaign", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.concurrency = args.concurrency or 4
    if args.child == "post_office":
        return post_office_child(args.campaign, args.baseline_sample, args.post_office_processes)

    os.environ.update(PRODUCTION_ENV)
    os.environ.setdefault("SENDGRID_API_KEY", API_KEY)  # this process sends nothing; each phase sets its own
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailer_project.settings")
    for name in ("DATABASE_URL", "REDIS_URL"):
        if not os.environ.get(name):
            sys.exit(f"{name} is not set: run this with `make bench-send ARGS=...` "
                     f"(scripts/devstack.py exec starts throwaway servers).")
    # Ctrl-C and SIGTERM both unwind the ExitStack below, which stops every process started here.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.provider == "smtp" and not args.skip_baselines:
        ensure_post_office()

    import django
    django.setup()
    from django.core.management import call_command

    logging.getLogger("campaigns").setLevel(logging.WARNING)  # this process's own INFO lines are noise here
    call_command("migrate", verbosity=0)
    shutil.rmtree(BENCH_DIR, ignore_errors=True)
    BENCH_DIR.mkdir(parents=True)
    sample = min(args.recipients, args.baseline_sample or (20_000 if args.provider == "smtp" else args.recipients))

    began = time.perf_counter()
    campaign_id = create_campaign(args.recipients, args.batch_size, args.tracking)
    print(f"== {args.recipients:,} recipients created in {time.perf_counter() - began:.1f} s "
          f"(campaign #{campaign_id}, batches of {args.batch_size})", flush=True)
    try:
        if args.provider == "sendgrid":
            result = bench_sendgrid(campaign_id, args, sample)
        else:
            result = bench_smtp(campaign_id, args, sample)
    finally:
        if not args.keep:
            shutil.rmtree(BENCH_DIR, ignore_errors=True)
    print(f"emails_per_sec={result['rate']:.0f} duplicates={result['duplicates']} lost={result['lost']}")
    return 0


# --- The campaign ---------------------------------------------------------------------------------

FIRST = ["Ana", "João", "Émilie", "Liam", "Olivia", "Noah", "Emma", "Zoë", "Mateo", "Sofía", "Łukasz", "Aiko",
         "Chen", "Fatima", "Oliver", "Amelia", "Jack", "Isla", "Lucas", "Mia", "Jean-Luc", ""]
LAST = ["Silva", "Smith", "Müller", "García", "Rossi", "Nguyen", "Kowalski", "Dubois", "Jones", "Brown",
        "Sato", "Kim", "O'Neil", "van der Berg", "Da Costa", "Johnson", "Lee"]
LOCAL = ["silva", "smith", "mueller", "garcia", "rossi", "nguyen", "kowalski", "dubois", "jones", "brown",
         "sato", "kim", "oneil", "vanderberg", "dacosta", "johnson", "lee"]
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.co.uk", "acme-corp.com", "example.org",
           "mail.example.net", "uni.edu", "company.io", "web.de"]
CITIES = ["Lisbon", "London", "Paris", "Berlin", "São Paulo", "New York", "Tokyo", "Kraków", "Zürich", "Austin"]
COMPANIES = ["Acme, Inc.", "Globex", "Initech", "Umbrella \"Corp\"", "Hooli", "Stark Industries", "Wayne Ent."]
PLANS = ["free", "pro", "enterprise"]

# One statement: CRM-like rows (some without a first name, so the merge-tag default is used).
INSERT_RECIPIENTS = """
INSERT INTO campaigns_recipient (campaign_id, email, first_name, last_name, data)
SELECT %(campaign)s,
       'user' || g || '.' || (%(local)s::text[])[1 + (g * 7) %% %(n_last)s] || '@'
           || (%(domains)s::text[])[1 + g %% %(n_domains)s],
       (%(first)s::text[])[1 + g %% %(n_first)s],
       (%(last)s::text[])[1 + (g * 7) %% %(n_last)s],
       jsonb_build_object('city', (%(cities)s::text[])[1 + (g * 3) %% %(n_cities)s],
                          'company', (%(companies)s::text[])[1 + (g * 5) %% %(n_companies)s],
                          'plan', (%(plans)s::text[])[1 + g %% %(n_plans)s],
                          'signup_date', (date '2015-01-01' + (g %% 3650))::text)
FROM generate_series(1, %(rows)s) AS g
"""


def create_campaign(rows, batch_size, tracking=False):
    """A newsletter campaign (the starter template, with an imported column in the subject) and ROWS recipients."""
    from django.db import connection

    from campaigns.models import Campaign
    from campaigns.starter_templates import read_starter

    subject, body = read_starter("newsletter")
    campaign = Campaign.objects.create(
        name=f"Send benchmark ({rows:,})", subject=f"{{{{ city }}}}: {subject}",
        from_email="Acme News <news@acme-corp.com>", html_body=body, batch_size=batch_size,
        # Off by default, so the pipeline sends exactly the messages the baselines send.
        track_engagement=tracking)
    params = {"campaign": campaign.pk, "rows": rows}
    for name, values in (("first", FIRST), ("last", LAST), ("local", LOCAL), ("domains", DOMAINS),
                         ("cities", CITIES), ("companies", COMPANIES), ("plans", PLANS)):
        params[name], params[f"n_{name}"] = values, len(values)
    with connection.cursor() as cursor:
        cursor.execute(INSERT_RECIPIENTS, params)
        cursor.execute("ANALYZE campaigns_recipient")
    return campaign.pk


def campaign_rows(campaign_id, limit=None):
    """(batch number, row) in batch order, each row shaped like a batch claim's:
    (id, status, attempts, email, first name, last name, data)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT d.batch_number, d.id, d.status, d.attempts, r.email, r.first_name, r.last_name, r.data "
            "FROM campaigns_deliverylog d JOIN campaigns_recipient r ON r.id = d.recipient_id "
            "WHERE d.campaign_id = %s ORDER BY d.batch_number, d.id LIMIT %s", [campaign_id, limit])
        return [(row[0], row[1:]) for row in cursor.fetchall()]


def campaign_values(campaign_id):
    from campaigns.models import Campaign

    return Campaign.objects.filter(pk=campaign_id).values().get()  # every field build_batch might read


# --- Processes ------------------------------------------------------------------------------------

def _die_with_parent():
    """Runs in the worker before exec: SIGTERM it if this script dies, even by SIGKILL."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Worker:
    """`celery -A mailer_project worker` as production runs it, in a process group of its own."""

    def __init__(self, queue, concurrency, env):
        self.name = f"{queue}-{uuid.uuid4().hex[:6]}@bench"
        self.log_path = BENCH_DIR / f"worker-{queue}.log"
        self.cmd = [sys.executable, "-m", "celery", "-A", "mailer_project", "worker", "-Q", queue, "-n", self.name,
                    "--concurrency", str(concurrency), "--loglevel", "INFO"]
        self.env = env
        self.proc = None

    def start(self, timeout=60):
        from mailer_project.celery import app

        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited early; see {self.log_path}")
            if app.control.ping(destination=[self.name], timeout=0.5):
                return self
        raise RuntimeError(f"worker {self.name} not ready after {timeout}s; see {self.log_path}")

    def pids(self):
        """The worker's main process and its pool children."""
        pid = self.proc.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        return [pid, *map(int, children)]

    def rss_mb(self):
        """{pid: resident set size in MB} of the main process and each pool child."""
        sizes = {}
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            sizes[pid] = int(status.split("VmRSS:")[1].split()[0]) / 1024
        return sizes

    def stop(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def worker_env(**settings):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.update({name: str(value) for name, value in settings.items()})
    return env


@contextlib.contextmanager
def workers(env, concurrency, limit_note):
    """One scheduler worker and one sender worker with CONCURRENCY pool processes; yields the sender."""
    with contextlib.ExitStack() as stack:
        scheduler = Worker("scheduler", 1, env)
        stack.callback(scheduler.stop)
        scheduler.start()
        sender = Worker("senders", concurrency, env)
        stack.callback(sender.stop)
        sender.start()
        print(f"   workers: 1 scheduler (concurrency 1), 1 sender worker with {concurrency} prefork pool "
              f"processes, on {os.cpu_count()} cores; {limit_note}", flush=True)
        yield sender


def local_server(module, *args):
    from campaigns.localservers import running

    return running(module, *args, log_path=BENCH_DIR / f"{module}.log")


# --- The measured campaign ----------------------------------------------------------------------

def tree_cpu_seconds(pid):
    """CPU seconds of a process, its finished children and its live descendants (utime + stime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    ticks = sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK") + sum(tree_cpu_seconds(int(child)) for child in children)


def machine_busy_seconds():
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def postmaster_pid():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW data_directory")
        data_directory = cursor.fetchone()[0]
    return int((Path(data_directory) / "postmaster.pid").read_text().split()[0])


def redis_pid():
    import redis
    from django.conf import settings

    return int(redis.Redis.from_url(settings.REDIS_URL).info("server")["process_id"])


class CpuMeter:
    """CPU seconds used between two snapshots by each part of the system, and by the whole machine.

    PostgreSQL is counted as the postmaster's whole tree, so that backends which come and go are included
    (Celery's Django fixup closes the database connection after every task)."""

    def __init__(self, pids):
        self.pids = pids  # name -> pid of the process tree

    def snapshot(self):
        return {name: tree_cpu_seconds(pid) for name, pid in self.pids.items()}, machine_busy_seconds()

    @staticmethod
    def used(before, after):
        return {name: after[0][name] - before[0][name] for name in after[0]}, after[1] - before[1]


def send_campaign(campaign_id, total, sender, server, timeout):
    """Send now and wait for completion; returns seconds, the first batch's delay, worker RSS samples and
    the CPU each part used."""
    from tqdm import tqdm

    from campaigns.models import Campaign
    from campaigns.sending import control

    finished = (Campaign.Status.COMPLETED, Campaign.Status.FAILED, Campaign.Status.CANCELLED)
    fields = ("status", "sent_count", "failed_count", "skipped_count", "unknown_count", "completed_at")
    bar = tqdm(total=total, unit="mail", disable=not sys.stderr.isatty(), smoothing=0.05)
    first_batch = rss_first = None
    last_done, last_move = 0, time.monotonic()
    meter = CpuMeter({"sender worker": sender.proc.pid, "provider server": server.pid,
                      "PostgreSQL": postmaster_pid(), "Redis": redis_pid()})
    cpu_before = meter.snapshot()
    started_wall, started = time.time(), time.perf_counter()
    control.send_now(campaign_id)
    while True:
        row = Campaign.objects.filter(pk=campaign_id).values(*fields).get()
        done = row["sent_count"] + row["failed_count"] + row["skipped_count"] + row["unknown_count"]
        bar.update(done - bar.n)
        if first_batch is None and done:
            first_batch, rss_first = time.perf_counter() - started, sender.rss_mb()
        if row["status"] in finished:
            break
        if done != last_done:
            last_done, last_move = done, time.monotonic()
        elif time.monotonic() - last_move > 120:
            raise RuntimeError(f"no progress for 2 minutes at {done:,}/{total:,}; see the logs in {BENCH_DIR}")
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"campaign not finished after {timeout}s")
        time.sleep(0.1)
    cpu_after = meter.snapshot()
    bar.close()
    seconds = row["completed_at"].timestamp() - started_wall if row["completed_at"] else time.perf_counter() - started
    return {"seconds": seconds, "first_batch": first_batch, "status": row["status"], "counts": row,
            "rss_first": rss_first or {}, "rss_end": sender.rss_mb(), "cpu": CpuMeter.used(cpu_before, cpu_after),
            "load": os.getloadavg()[0]}


def exactly_once(campaign_id, seen):
    """duplicates: extra copies at the server; lost: recipients neither seen there nor failed/skipped."""
    from campaigns.models import DeliveryLog, Recipient

    D = DeliveryLog.Status
    statuses = collections.Counter()
    accounted_for = set()
    for email, status in DeliveryLog.objects.filter(campaign_id=campaign_id).values_list("email", "status"):
        statuses[status] += 1
        if status in (D.FAILED, D.SKIPPED):
            accounted_for.add(email)
    recipients = set(Recipient.objects.filter(campaign_id=campaign_id).values_list("email", flat=True))
    return {
        "duplicates": sum(n - 1 for n in seen.values() if n > 1),
        "lost": len(recipients - set(seen) - accounted_for),
        "strangers": len(set(seen) - recipients),
        "statuses": dict(statuses),
    }


def report_campaign(run, check, total, concurrency):
    rate = total / run["seconds"]
    print(f"   pipeline: {total:,} emails in {run['seconds']:.2f} s = {rate:,.0f} emails/s "
          f"(first batch done after {run['first_batch'] or 0:.2f} s; campaign {run['status']})")
    print(f"   delivery logs: {check['statuses']}; at the server: duplicates={check['duplicates']} "
          f"lost={check['lost']} unexpected addresses={check['strangers']}")
    first, end = run["rss_first"], run["rss_end"]
    growth = {pid: end[pid] - first[pid] for pid in first if pid in end}
    print(f"   sender worker memory (main + {concurrency} pool processes, RSS from /proc): "
          f"{sum(first.values()):.0f} MB at the first batch -> {sum(end.values()):.0f} MB at the end = "
          f"{sum(end.values()) - sum(first.values()):+.1f} MB "
          f"(largest per process {max(growth.values(), default=0):+.1f} MB; target < 50 MB)")
    used, busy = run["cpu"]
    ours = sum(used.values())
    cores = os.cpu_count()
    parts = ", ".join(f"{name} {seconds:.1f} s ({seconds / total * 1e6:.0f} µs/email)"
                      for name, seconds in used.items())
    print(f"   CPU during the run: {parts}; the whole machine {busy:.1f} of {cores * run['seconds']:.1f} "
          f"available ({busy / (cores * run['seconds']):.0%} busy; anything else running on the machine is in that "
          f"figure too: load average {run['load']:.1f} at the end)")
    print(f"   CPU-bound ceiling for these parts on {cores} idle cores: {cores * total / ours:,.0f} emails/s "
          f"({ours / total * 1e6:.0f} µs of CPU per email)", flush=True)
    return rate


# --- SendGrid ---------------------------------------------------------------------------------------

def bench_sendgrid(campaign_id, args, sample):
    total = args.recipients
    print(f"== SendGrid path: fake SendGrid API, {total:,} recipients", flush=True)
    records = BENCH_DIR / "sendgrid-pipeline.jsonl"
    with local_server("sendgrid_api", "--record-file", records, "--api-key", API_KEY) as (server, port):
        url = f"http://127.0.0.1:{port}"
        env = worker_env(SENDGRID_API_KEY=API_KEY, SENDGRID_API_HOST=url, SENDGRID_RATE_LIMIT_PER_SEC=UNCAPPED_RATE)
        with workers(env, args.concurrency, LIMIT_NOTES[args.provider]) as sender:
            run = send_campaign(campaign_id, total, sender, server, args.timeout)
    seen = collections.Counter()
    with open(records, encoding="utf-8") as lines:
        for line in lines:
            seen.update(json.loads(line)["to"])
    check = exactly_once(campaign_id, seen)
    rate = report_campaign(run, check, total, args.concurrency)

    if not args.skip_baselines:
        print(f"== Baseline: the fake SendGrid API's raw accept rate, {sample:,} recipients in batches of "
              f"{args.batch_size}, POSTed by {args.concurrency} client processes", flush=True)
        payloads = sendgrid_payloads(campaign_id, sample)
        raw_records = BENCH_DIR / "sendgrid-raw.jsonl"
        with local_server("sendgrid_api", "--record-file", raw_records, "--api-key", API_KEY) as (_, port):
            url = f"http://127.0.0.1:{port}"
            seconds = post_concurrently(url, payloads, args.concurrency)
            from campaigns.localservers.sendgrid_api import get_stats
            accepted = get_stats(url)["personalizations_accepted"]
        raw_rate = accepted / seconds
        print(f"   raw accept: {accepted:,} personalizations in {len(payloads):,} requests, {seconds:.2f} s "
              f"= {raw_rate:,.0f} emails/s")
        print(f"   pipeline / raw accept = {rate / raw_rate:.2f}")
    print(f"   target: >= 5,000 emails/s end to end: {'met' if rate >= 5000 else 'NOT met'}")
    return {"rate": rate, **check}


def sendgrid_payloads(campaign_id, sample):
    """The request bodies the pipeline sends for the campaign's first SAMPLE recipients, as bytes."""
    from campaigns.sending.pipeline import build_batch
    from campaigns.sending.providers.sendgrid import SendGridProvider

    campaign = campaign_values(campaign_id)
    provider = SendGridProvider(api_key=API_KEY, host="http://unused")
    by_batch = collections.defaultdict(list)
    for batch_number, row in campaign_rows(campaign_id, sample):
        by_batch[batch_number].append(row)
    return [json.dumps(provider.build_payload(build_batch(campaign, rows))).encode("utf-8")
            for rows in by_batch.values()]


def _post_all(url, payloads, ready, go, results):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)  # kept alive
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    ready.wait()
    go.wait()
    statuses = collections.Counter()
    for body in payloads:
        conn.request("POST", "/v3/mail/send", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        statuses[response.status] += 1
    conn.close()
    results.put(dict(statuses))


def post_concurrently(url, payloads, clients):
    """Seconds for CLIENTS processes to POST every payload (round robin) and get every answer."""
    from django.db import connections

    connections.close_all()  # forked children must not share the database socket
    ctx = multiprocessing.get_context("fork")
    ready, go, results = ctx.Barrier(clients + 1), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_post_all, args=(url, payloads[i::clients], ready, go, results))
             for i in range(clients)]
    for proc in procs:
        proc.start()
    try:
        ready.wait()
        started = time.perf_counter()
        go.set()
        statuses = collections.Counter()
        for _ in procs:
            statuses.update(results.get(timeout=600))
        seconds = time.perf_counter() - started
    finally:
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
    if set(statuses) != {202}:
        raise RuntimeError(f"the raw baseline got answers other than 202: {dict(statuses)}")
    return seconds


# --- SMTP -------------------------------------------------------------------------------------------

def bench_smtp(campaign_id, args, sample):
    total = args.recipients
    print(f"== SMTP path: SMTP sink, {total:,} recipients", flush=True)
    maildir = BENCH_DIR / "mail-pipeline"
    with local_server("smtp_sink", "--maildir", maildir) as (server, port):
        env = worker_env(SENDGRID_API_KEY="", EMAIL_HOST="127.0.0.1", EMAIL_PORT=port, EMAIL_HOST_USER="",
                         EMAIL_HOST_PASSWORD="", EMAIL_USE_TLS="False", SMTP_RATE_LIMIT_PER_SEC="0")
        with workers(env, args.concurrency, LIMIT_NOTES[args.provider]) as sender:
            run = send_campaign(campaign_id, total, sender, server, args.timeout)
    seen = collections.Counter(rcpt for rcpt, _ in sink_files(maildir))
    check = exactly_once(campaign_id, seen)
    rate = report_campaign(run, check, total, args.concurrency)
    if args.skip_baselines:
        return {"rate": rate, **check}

    messages = []
    for rcpt, path in sink_files(maildir, limit=sample):
        mail_from, rcpt, content = read_sink_file(path)
        messages.append((mail_from, rcpt, content))
    shutil.rmtree(maildir, ignore_errors=True)  # 200k files: no need to keep them

    print(f"== Baseline: plain smtplib loop (one connection, sendmail per message) sending {len(messages):,} "
          f"of the messages the pipeline delivered, to a fresh sink", flush=True)
    with local_server("smtp_sink", "--maildir", BENCH_DIR / "mail-smtplib") as (server, port):
        sink_cpu = tree_cpu_seconds(server.pid)
        seconds, client_cpu = smtplib_loop(port, messages)
        sink_cpu = tree_cpu_seconds(server.pid) - sink_cpu
    loop_rate = len(messages) / seconds
    delivered = sum(1 for _ in sink_files(BENCH_DIR / "mail-smtplib"))
    print(f"   smtplib loop: {len(messages):,} in {seconds:.2f} s = {loop_rate:,.0f} emails/s "
          f"({delivered:,} stored by the sink; CPU per email: client {client_cpu / len(messages) * 1e6:.0f} µs, "
          f"sink {sink_cpu / len(messages) * 1e6:.0f} µs)", flush=True)
    shutil.rmtree(BENCH_DIR / "mail-smtplib", ignore_errors=True)
    del messages

    print(f"== Baseline: django-post_office {POST_OFFICE_VERSION}, the same {sample:,} rendered messages queued "
          f"with mail.send_many, delivered by send_queued_mail_until_done(processes={args.post_office_processes}) "
          f"to a fresh sink", flush=True)
    po_maildir = BENCH_DIR / "mail-post-office"
    with local_server("smtp_sink", "--maildir", po_maildir) as (_, port):
        env = worker_env(DJANGO_SETTINGS_MODULE="benchmarks.post_office_settings", SENDGRID_API_KEY="",
                         EMAIL_HOST="127.0.0.1", EMAIL_PORT=port, EMAIL_HOST_USER="", EMAIL_HOST_PASSWORD="",
                         EMAIL_USE_TLS="False")
        output = subprocess.run(
            [sys.executable, __file__, "--child", "post_office", "--campaign", str(campaign_id),
             "--baseline-sample", str(sample), "--post-office-processes", str(args.post_office_processes)],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    po = json.loads(output.strip().splitlines()[-1])
    po_delivered = sum(1 for _ in sink_files(po_maildir))
    po_rate = po["sent"] / po["seconds"]
    print(f"   post_office: {po['sent']:,} sent ({po['failed']} failed) in {po['seconds']:.2f} s = {po_rate:,.0f} "
          f"emails/s ({po_delivered:,} stored by the sink; queuing them took {po['queue_seconds']:.1f} s, untimed)")

    print(f"   pipeline / smtplib loop = {rate / loop_rate:.2f} (target >= 0.8)")
    print(f"   pipeline / post_office  = {rate / po_rate:.2f} (target >= 3)")
    print(f"   baselines measured on {sample:,} messages each; their rates apply to the full {total:,} "
          f"(extrapolated: smtplib loop {total / loop_rate:.0f} s, post_office {total / po_rate:.0f} s)", flush=True)
    return {"rate": rate, **check}


def sink_files(maildir, limit=None):
    """(recipients header, path) of each message the sink stored."""
    count = 0
    with os.scandir(maildir) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith(".eml"):
                continue
            with open(entry.path, "rb") as f:
                head = f.read(1024)
            rcpt = head.split(b"X-Sink-Rcpt-To: ", 1)[1].split(b"\r\n", 1)[0].decode()
            yield rcpt, entry.path
            count += 1
            if limit and count >= limit:
                return


def read_sink_file(path):
    """(envelope sender, recipient, message bytes as received) from one stored message."""
    data = Path(path).read_bytes()
    mail_from_line, rcpt_line, content = data.split(b"\r\n", 2)
    return (mail_from_line.split(b": ", 1)[1].decode(), rcpt_line.split(b": ", 1)[1].decode(), content)


def smtplib_loop(port, messages):
    conn = smtplib.SMTP("127.0.0.1", port, local_hostname="bench.local")
    conn.ehlo()
    options = ["BODY=8BITMIME"] if conn.has_extn("8bitmime") else []
    started, cpu_started = time.perf_counter(), time.process_time()
    for mail_from, rcpt, content in messages:
        conn.sendmail(mail_from, [rcpt], content, mail_options=options)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    conn.quit()
    return seconds, cpu


def ensure_post_office():
    try:
        from importlib.metadata import version

        if version("django-post_office") == POST_OFFICE_VERSION:
            return
    except Exception:
        pass
    print(f"== Installing django-post-office=={POST_OFFICE_VERSION} into .venv for the baseline "
          f"(not a dependency of the product)", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", f"django-post-office=={POST_OFFICE_VERSION}"],
                   check=True)


def post_office_child(campaign_id, sample, processes):
    """In a process with post_office installed: queue SAMPLE rendered messages, time their delivery."""
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from post_office import mail
    from post_office.models import STATUS, Email

    from campaigns import links
    from campaigns.rendering import compile_campaign, recipient_context
    from campaigns.sending.providers.base import list_unsubscribe_headers

    call_command("migrate", "post_office", verbosity=0)
    campaign = campaign_values(campaign_id)
    compiled = compile_campaign(campaign["subject"], campaign["html_body"], campaign["text_body"])
    sender = campaign["from_email"] or settings.DEFAULT_FROM_EMAIL
    began = time.perf_counter()
    queued = []
    for _batch, (pk, _status, _attempts, email, first, last, data) in campaign_rows(campaign_id, sample):
        url = links.unsubscribe_url(pk)
        data = json.loads(data) if isinstance(data, str) else data or {}
        rendered = compiled.render(recipient_context(email, first, last, data, url))
        queued.append({"recipients": [email], "sender": sender, "subject": rendered.subject,
                       "message": rendered.text, "html_message": rendered.html,
                       "headers": list_unsubscribe_headers(url)})
        if len(queued) == 1000:
            mail.send_many(queued)
            queued = []
    mail.send_many(queued)
    queue_seconds = time.perf_counter() - began

    started = time.perf_counter()
    mail.send_queued_mail_until_done(lockfile=str(BENCH_DIR / "post_office"), processes=processes)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "queue_seconds": queue_seconds,
                      "sent": Email.objects.filter(status=STATUS.sent).count(),
                      "failed": Email.objects.filter(status=STATUS.failed).count()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
