"""Ten million recipients on one machine (issue 26 item 4): one campaign of --recipients, end to end, each
figure printed next to its same-run baseline.

    make bench-scale ARGS="--recipients 10000000"
    make bench-scale ARGS="--recipients 200000"          # a few minutes: develop at this size

(`make bench-scale` runs this under `scripts/devstack.py exec`: throwaway PostgreSQL and Redis.) Steps:

1. **Empty database**: a sent campaign of 200 recipients (benchmarks/sent_campaign.py); the admin's
   campaign list, campaign page, recipients list and delivery-log list timed on it (median of --repeat):
   the baselines of step 5.
2. **Import**: a CRM-style CSV of N rows (benchmarks/corpus.py, cached under var/bench-scale/) through
   the product's import path (`campaigns.audience.importing.service.import_recipients`, in a fresh process,
   with its peak RSS), then `psql \\copy` of exactly the imported rows into the emptied table: the ratio
   (target <= 1.3). The copied rows replace the imported ones (same content), so the campaign goes on.
3. **Preflight** of the N recipients in a fresh process: its time and peak RSS growth against the same
   rows read through the same cursor without rendering (benchmarks/preflight_bench.py's baseline).
4. **Send now** through real Celery workers to the fake SendGrid API (benchmarks/send_bench.py's
   machinery): first batch, completion, duplicates and lost counted against what the fake API received,
   the sender worker's RSS sampled every 2 s (growth, target < 50 MB), CPU per email per part.
5. **While it sends** (once --pages-at of the rows are done): the same admin pages on the big campaign,
   median of --repeat under the sending load: campaign page <= 1 s, the lists <= 3x step 1's times.
6. **After it completed**: the follow-up page (target <= 10 s); `stats/` and the delivery-log CSV exports
   (the admin's and the API's) in a fresh process, its peak RSS growth while streaming (bounded: not the
   table); the disk per recipient (pg_total_relation_size of recipients, delivery logs and batches,
   indexes included, / N); then the partitioning study for docs/scaling.md: a btree against a BRIN index
   on sent_at (size, and the query time of a time-window count), and the per-campaign counts and the
   follow-up query on the whole table against a copy holding only the campaign (what a partition by
   campaign would hold). Skip it with --skip-study.

Load average (`uptime`) is printed at each step: the machine is shared. On a machine too busy to send
N in the time there is: --stop-after S stops the workers S seconds after the first batch (the rest of the
rows stay pending; duplicates and lost are checked on what went out), --send-for S cancels instead;
--skip-import, --skip-preflight, --skip-exports and --skip-study leave steps out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import send_bench  # noqa: E402

SCALE_DIR = ROOT / "var" / "bench-scale"
# send_bench's helpers write their logs and records under send_bench.BENCH_DIR: a directory of this
# benchmark's own, so that a bench-send run in the same checkout never removes them.
send_bench.BENCH_DIR = SCALE_DIR / "run"
PSQL = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
HOSTS = "127.0.0.1,testserver,localhost"


def load():
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def say(text):
    print(text, flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=4, help="sender worker pool processes")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5, help="loads of each page for its median")
    parser.add_argument("--pages-at", type=float, default=0.3,
                        help="time the pages once this share is done (or --pages-after seconds after the first batch)")
    parser.add_argument("--pages-after", type=float, default=120)
    parser.add_argument("--stop-after", type=float, default=None,
                        help="stop the workers this many seconds after the first batch and measure the rest on the "
                             "campaign as it stands (rows left pending): for a machine too busy to send it all")
    parser.add_argument("--skip-exports", action="store_true", help="skip stats/ and the CSV export")
    parser.add_argument("--send-for", type=float, default=None,
                        help="cancel the campaign this many seconds after send-now (the rest of the rows are "
                             "skipped) and go on with what was sent: for a machine too busy to send it all")
    parser.add_argument("--timeout", type=int, default=4 * 3600)
    parser.add_argument("--skip-import", action="store_true",
                        help="make the recipients with one INSERT ... SELECT (send_bench's) instead of the CSV import")
    parser.add_argument("--skip-preflight", action="store_true")
    parser.add_argument("--skip-study", action="store_true", help="skip the BRIN / partition measurements")
    parser.add_argument("--api-export", action="store_true",
                        help="stream the API's text/csv export too (the admin's Export always; each takes minutes at 10M)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--campaign", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    os.environ.update(send_bench.PRODUCTION_ENV)
    os.environ.update({"ALLOWED_HOSTS": HOSTS, "API_RATE_LIMIT": "1000000/min", "IMPORT_MAX_UPLOAD_MB": "100000"})
    os.environ.setdefault("SENDGRID_API_KEY", send_bench.API_KEY)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailer_project.settings")
    for name in ("DATABASE_URL", "REDIS_URL"):
        if not os.environ.get(name):
            sys.exit(f"{name} is not set: run this with `make bench-scale ARGS=...`")
    import django

    django.setup()
    from django.conf import settings

    # DEBUG is off, as in production, but no collectstatic has run here: plain static URLs for the admin pages.
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    if args.child:
        return CHILDREN[args.child](args.campaign)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    import logging
    logging.getLogger("campaigns").setLevel(logging.WARNING)
    setup_test_environment()
    call_command("migrate", verbosity=0)
    shutil.rmtree(send_bench.BENCH_DIR, ignore_errors=True)
    send_bench.BENCH_DIR.mkdir(parents=True)
    SCALE_DIR.mkdir(parents=True, exist_ok=True)
    n = args.recipients
    say(f"== bench-scale: {n:,} recipients, {os.cpu_count()} cores; {load()}")

    from benchmarks.sent_campaign import make_sent_campaign, superuser_client
    client = secure(superuser_client())
    small = make_sent_campaign("Small campaign (empty-database baseline)", 200)
    baseline = time_pages(client, small.pk, args.repeat)
    args.baseline_campaign = small.pk
    say(f"== 1. Empty database (one sent campaign of 200), median of {args.repeat}: "
        + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in baseline.items()) + f"; {load()}")

    campaign_id = import_step(n) if not args.skip_import else made_step(n, args.batch_size)
    if not args.skip_import:  # the import step's TRUNCATE took the 200-row campaign's rows too: make it again
        args.baseline_campaign = make_sent_campaign("Small campaign (same-load baseline)", 200).pk
    n = prepare_campaign(campaign_id, args.batch_size)  # the rows the import kept (invalid and repeats dropped)
    if not args.skip_preflight:
        child_step("preflight", campaign_id)
    result = send_step(campaign_id, n, args, client, baseline)
    after_step(campaign_id, n, client, args, result)
    if not args.skip_study:
        study(campaign_id)
    say(f"emails_per_sec={result['rate']:.0f} duplicates={result['duplicates']} lost={result['lost']} "
        f"first_batch_s={result['first_batch']:.2f} worker_rss_growth_mb={result['rss_growth']:.0f}")
    if not os.environ.get("BENCH_KEEP"):
        shutil.rmtree(send_bench.BENCH_DIR, ignore_errors=True)
    return 0


def secure(client):
    """The workers' production settings (DEBUG off) redirect plain HTTP to HTTPS: requests come as through the proxy."""
    client.defaults["HTTP_X_FORWARDED_PROTO"] = "https"  # as the reverse proxy says (SECURE_PROXY_SSL_HEADER)
    return client


# --- Pages ---------------------------------------------------------------------------------------------

def page_urls(campaign_id):
    from django.urls import reverse

    return {
        "campaign page": reverse("admin:campaigns_campaign_change", args=[campaign_id]),
        "campaign list": reverse("admin:campaigns_campaign_changelist"),
        "recipients list": reverse("admin:campaigns_recipient_changelist") + f"?campaign__id__exact={campaign_id}",
        "delivery-log list": reverse("admin:campaigns_deliverylog_changelist") + f"?campaign__id__exact={campaign_id}",
    }


def time_pages(client, campaign_id, repeat):
    from benchmarks.sent_campaign import median_page_seconds

    return {name: median_page_seconds(client, url, repeat, warm_up=1) for name, url in page_urls(campaign_id).items()}


# --- 2. Import -----------------------------------------------------------------------------------------

def import_step(n):
    from benchmarks.corpus import write_csv
    from campaigns.models import Campaign

    path = SCALE_DIR / f"recipients-{n}.csv"
    if not path.exists():
        began = time.perf_counter()
        write_csv(path.with_suffix(".tmp"), n)
        path.with_suffix(".tmp").rename(path)
        say(f"   wrote {path.name} in {time.perf_counter() - began:.0f} s (cached for the next run)")
    # IMPORT_MAX_ROWS (default 2,000,000 a file) raised for this one file of N rows.
    os.environ["IMPORT_MAX_ROWS"] = str(max(n, 2_000_000))
    say(f"== 2. Import of {path.name} ({path.stat().st_size / 2**20:,.0f} MB) through "
        f"campaigns.audience.importing.service.import_recipients, in a fresh process (IMPORT_MAX_ROWS raised to "
        f"{os.environ['IMPORT_MAX_ROWS']}); {load()}")
    settle()
    out = run([sys.executable, str(ROOT / "benchmarks" / "import_bench.py"), "--child", "import", str(path)])
    result = json.loads(out.splitlines()[-1])
    campaign_id = Campaign.objects.filter(name="Benchmark").order_by("-pk").values_list("pk", flat=True)[0]
    export = SCALE_DIR / "final-rows.copy"
    psql(f"\\copy (SELECT campaign_id, email, first_name, last_name, data FROM campaigns_recipient "
         f"WHERE campaign_id = {campaign_id} ORDER BY id) TO '{export}'")
    psql("TRUNCATE campaigns_recipient CASCADE")
    settle()
    load_at = load()
    began = time.perf_counter()
    psql(f"\\copy campaigns_recipient (campaign_id, email, first_name, last_name, data) FROM '{export}'")
    copy_seconds = time.perf_counter() - began
    export.unlink()
    imported = result["imported"]
    say(f"   import: {result['seconds']:.1f} s = {n / result['seconds']:,.0f} rows/s ({result['summary']}; "
        f"peak RSS {result['peak_rss_mb']} MB)")
    say(f"   psql \\copy of the {imported:,} imported rows into the emptied table: {copy_seconds:.1f} s "
        f"({imported / copy_seconds:,.0f} rows/s; {load_at})")
    say(f"   import / psql \\copy = {result['seconds'] / copy_seconds:.2f} (target <= 1.3)")
    with_cursor(lambda c: c.execute("VACUUM ANALYZE campaigns_recipient"))
    return campaign_id


def made_step(n, batch_size):
    began = time.perf_counter()
    campaign_id = send_bench.create_campaign(n, batch_size)
    say(f"== 2. (--skip-import) {n:,} recipients made with one INSERT ... SELECT in {time.perf_counter() - began:.1f} s")
    from campaigns.models import Campaign

    say(f"   merge-tag columns {Campaign.objects.get(pk=campaign_id).recipient_data_keys()} recorded as an import "
        "records them (send_bench.create_campaign)")
    return campaign_id


def prepare_campaign(campaign_id, batch_size):
    """The starter newsletter, sent as send_bench sends it; total_recipients as the import left it."""
    from campaigns.message.starter_templates import read_starter
    from campaigns.models import Campaign, Recipient

    subject, body = read_starter("newsletter")
    Campaign.objects.filter(pk=campaign_id).update(
        name=f"Scale benchmark #{campaign_id}", subject=subject, html_body=body,
        from_email="Acme News <news@acme-corp.com>", batch_size=batch_size, track_engagement=False)
    rows = Recipient.objects.filter(campaign_id=campaign_id).count()
    say(f"   campaign #{campaign_id}: {rows:,} recipients")
    return rows


# --- 3. Preflight, 6. stats/ and exports: fresh processes, for their own peak RSS ------------------------

def child_step(name, campaign_id):
    out = run([sys.executable, __file__, "--child", name, "--campaign", str(campaign_id)])
    for line in out.splitlines():
        if line.startswith("   ") or line.startswith("=="):
            say(line)


def peak_mb():
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux keeps that across fork and exec, so a child
    started after this script wrote the 10M-row CSV (~4 GB) reported the writer's peak as its own."""
    return int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) / 1024


def child_preflight(campaign_id):
    from benchmarks.preflight_bench import CountOnly
    from campaigns.message import preflight
    from campaigns.models import Campaign

    campaign = Campaign.objects.get(pk=campaign_id)
    campaign.recipient_data_keys()
    print(f"== 3. Preflight of campaign #{campaign_id} in a fresh process; {load()}")
    at_start = peak_mb()
    baseline = CountOnly()
    began = time.perf_counter()
    preflight.scan_recipients(campaign, baseline)
    base_seconds = time.perf_counter() - began
    before = peak_mb()
    began = time.perf_counter()
    report = preflight.preflight(campaign, lambda chunk: None)
    seconds = time.perf_counter() - began
    after = peak_mb()
    figures = report["figures"]
    print(f"   baseline (same cursor and chunks, no rendering): {base_seconds:.1f} s for {baseline.rows:,} rows; "
          f"peak RSS {at_start:.0f} -> {before:.0f} MB")
    print(f"   preflight: {seconds:.1f} s = {figures['audience'] / seconds:,.0f} recipients/s "
          f"(x{seconds / base_seconds:.2f} the read); peak RSS {before:.0f} -> {after:.0f} MB "
          f"({after - before:+.0f} MB; audience {figures['audience']:,}, errors {len(report['errors'])}, "
          f"warnings {len(report['warnings'])}); {load()}", flush=True)
    return 0


def child_exports(campaign_id):
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.urls import reverse

    from benchmarks.sent_campaign import superuser_client
    from campaigns.api import tokens

    setup_test_environment()
    admin = secure(superuser_client())
    _, token = tokens.create_token(get_user_model().objects.get(username="bench"), "scale-bench")
    api = secure(Client(HTTP_AUTHORIZATION=f"Bearer {token}"))
    stats_url = f"/api/v1/campaigns/{campaign_id}/stats/"
    samples = []
    for _ in range(5):
        began = time.perf_counter()
        response = api.get(stats_url)
        samples.append(time.perf_counter() - began)
        assert response.status_code == 200, response.content[:500]
    print(f"== 6c. stats/ and the delivery-log exports in a fresh process; {load()}")
    print(f"   stats/: median of 5 {statistics.median(samples) * 1000:.0f} ms (first {samples[0] * 1000:.0f} ms); "
          f"peak RSS {peak_mb():.0f} MB")
    exports = [("admin Export", admin, reverse("admin:campaigns_campaign_export", args=[campaign_id]), {})]
    if os.environ.get("SCALE_API_EXPORT"):
        exports.append(("API delivery-logs/ text/csv", api, f"/api/v1/campaigns/{campaign_id}/delivery-logs/",
                        {"HTTP_ACCEPT": "text/csv"}))
    for name, client, url, headers in exports:
        before = peak_mb()
        began = time.perf_counter()
        response = client.get(url, **headers)
        assert response.status_code == 200, (url, response.status_code)
        size = lines = 0
        for chunk in response.streaming_content:
            size += len(chunk)
            lines += chunk.count(b"\n")
        seconds = time.perf_counter() - began
        print(f"   {name}: {lines - 1:,} rows, {size / 2**20:,.0f} MB in {seconds:.1f} s "
              f"({size / 2**20 / seconds:,.0f} MB/s); streamed: {response.streaming}; process peak RSS "
              f"{before:.0f} -> {peak_mb():.0f} MB ({peak_mb() - before:+.0f} MB)", flush=True)
    return 0


CHILDREN = {"preflight": child_preflight, "exports": child_exports}


# --- 4, 5. Send now, pages while it sends ----------------------------------------------------------------

def send_step(campaign_id, n, args, client, baseline):
    say(f"== 4. Send now: fake SendGrid API, {n:,} recipients, batches of {args.batch_size}; {load()}")
    records = send_bench.BENCH_DIR / "sendgrid-pipeline.jsonl"
    with send_bench.fake_sendgrid(records) as (server, port):
        env = send_bench.sendgrid_env(f"http://127.0.0.1:{port}")
        with send_bench.workers(env, args.concurrency, send_bench.LIMIT_NOTES["sendgrid"]) as sender:
            run_ = send_and_watch(campaign_id, n, sender, server, args, client, baseline)
    began = time.perf_counter()
    seen, _ = send_bench.read_sendgrid_records(records)
    stopped = run_["status"] == "in_progress"
    check = stopped_check(campaign_id, seen) if stopped else send_bench.exactly_once(campaign_id, seen)
    del seen
    say(f"   (exactly-once check read {records.stat().st_size / 2**20:,.0f} MB of records in "
        f"{time.perf_counter() - began:.0f} s)")
    records.unlink()
    if stopped:  # the rate of what went out, over the time until the stop
        c = run_["counts"]
        n = c["sent_count"] + c["failed_count"] + c["skipped_count"] + c["unknown_count"]
        say(f"   (stopped: the figures below are for the {n:,} rows done)")
    rate = send_bench.report_campaign(run_, check, n, args.concurrency)
    samples = run_["rss_samples"]
    totals = [total for _, total in samples]
    growth = totals[-1] - totals[0] if totals else 0
    say(f"   sender worker RSS sampled every 2 s ({len(samples)} samples): first batch {totals[0]:.0f} MB, "
        f"max {max(totals):.0f} MB, end {totals[-1]:.0f} MB; growth {growth:+.0f} MB, max - first "
        f"{max(totals) - totals[0]:+.0f} MB (target < 50 MB)")
    quarter = [f"{t:.0f}s {mb:.0f}MB" for t, mb in samples[::max(1, len(samples) // 8)]]
    say(f"   RSS over the run: {', '.join(quarter)}")
    return {"rate": rate, "first_batch": run_["first_batch"] or 0, "rss_growth": growth, "status": run_["status"],
            **check}


def stopped_check(campaign_id, seen):
    """exactly_once for a campaign stopped part way: duplicates at the server; lost = rows written sent that
    the server never saw; in flight = addresses the server accepted whose rows were not written yet when the
    workers were stopped (a batch cut off between the provider's answer and the ledger: it goes to `unknown`,
    never sent again); strangers = addresses the server saw that are no recipient's of the campaign."""
    import collections

    from campaigns.models import DeliveryLog, Recipient

    statuses = collections.Counter(DeliveryLog.objects.filter(campaign_id=campaign_id)
                                   .values_list("status", flat=True).iterator(chunk_size=100_000))
    sent = set(DeliveryLog.objects.filter(campaign_id=campaign_id, status="sent").values_list("email", flat=True)
               .iterator(chunk_size=100_000))
    not_written = set(seen) - sent
    recipients = set(Recipient.objects.filter(campaign_id=campaign_id, email__in=list(not_written))
                     .values_list("email", flat=True)) if not_written else set()
    return {"duplicates": sum(n - 1 for n in seen.values() if n > 1), "lost": len(sent - set(seen)),
            "in_flight": len(not_written & recipients), "strangers": len(not_written - recipients),
            "statuses": dict(statuses)}


def send_and_watch(campaign_id, total, sender, server, args, client, baseline):
    """send_bench.send_campaign, plus RSS samples and the pages timed once PAGES_AT of the rows are done."""
    from campaigns import services
    from campaigns.models import Campaign, SendBatch

    finished = (Campaign.Status.COMPLETED, Campaign.Status.FAILED, Campaign.Status.CANCELLED)
    fields = ("status", "sent_count", "failed_count", "skipped_count", "unknown_count", "completed_at",
              "total_recipients")
    meter = send_bench.CpuMeter({"sender worker": sender.proc.pid, "provider server": server.pid,
                                 "PostgreSQL": send_bench.postmaster_pid(), "Redis": send_bench.redis_pid()})
    send_bench.settle_database()
    cpu_before = meter.snapshot()
    first_batch = rows_committed = rss_first = None
    samples, last_sample, pages_done, cancelled = [], 0.0, False, False
    last_done, last_move, last_print = 0, time.monotonic(), time.monotonic()
    started_wall, started = time.time(), time.perf_counter()
    services.send_now(campaign_id)
    while True:
        row = Campaign.objects.filter(pk=campaign_id).values(*fields).get()
        done = row["sent_count"] + row["failed_count"] + row["skipped_count"] + row["unknown_count"]
        now = time.perf_counter() - started
        if rows_committed is None and SendBatch.objects.filter(campaign_id=campaign_id).exists():
            rows_committed = now
        if first_batch is None and done:
            first_batch, rss_first = now, sender.rss_mb()
            say(f"   first batch done {first_batch:.2f} s after send-now (rows committed at "
                f"{rows_committed or 0:.2f} s; target <= 2 s)")
        if first_batch is not None and now - last_sample >= 2:
            samples.append((now, sum(sender.rss_mb().values())))
            last_sample = now
        if row["status"] in finished:
            break
        if args.stop_after and first_batch is not None and now - first_batch > args.stop_after:
            say(f"   --stop-after {args.stop_after:.0f}: stopping the workers at {done:,}/{total:,} ({now:.0f} s in); "
                f"the rest stays pending")
            break
        if args.send_for and not cancelled and now > args.send_for:
            cancelled = True
            say(f"   --send-for {args.send_for:.0f}: cancelling at {done:,}/{total:,} ({now:.0f} s in); the rest is skipped")
            services.cancel(campaign_id)
        if not pages_done and first_batch is not None and (done >= args.pages_at * total
                                                           or now - first_batch >= args.pages_after):
            pages_done = True
            say(f"== 5. Pages while it sends ({done:,}/{total:,} done, {now:.0f} s in; {load()}), "
                f"median of {args.repeat}:")
            during = time_pages(client, campaign_id, args.repeat)
            # The same pages of the 200-row campaign, now: what the machine's load alone does to a page
            # (the empty-database baseline was timed on an idle machine).
            small_now = time_pages(client, args.baseline_campaign, args.repeat)
            for name, seconds in during.items():
                target = "<= 1 s" if name == "campaign page" else "<= 3x"
                say(f"   {name:20} {seconds * 1000:8.0f} ms vs empty {baseline[name] * 1000:6.0f} ms = "
                    f"{seconds / baseline[name]:5.1f}x (target {target}); the 200-row campaign's now "
                    f"{small_now[name] * 1000:6.0f} ms = {seconds / small_now[name]:5.1f}x")
            say(f"   ({load()} after the pages)")
        if done != last_done:
            last_done, last_move = done, time.monotonic()
        elif first_batch is not None and time.monotonic() - last_move > 300:
            raise RuntimeError(f"no progress for 5 minutes at {done:,}/{total:,}; see {send_bench.BENCH_DIR}")
        if time.monotonic() - last_print > 60:
            last_print = time.monotonic()
            say(f"   ... {done:,}/{total:,} after {now:.0f} s ({done / now:,.0f}/s; {load()})")
        if now > args.timeout:
            raise RuntimeError(f"campaign not finished after {args.timeout} s")
        time.sleep(0.02 if first_batch is None else 0.2)
    samples.append((time.perf_counter() - started, sum(sender.rss_mb().values())))
    cpu_after = meter.snapshot()
    seconds = row["completed_at"].timestamp() - started_wall if row["completed_at"] else time.perf_counter() - started
    return {"seconds": seconds, "first_batch": first_batch, "rows_committed": rows_committed, "start_task": None,
            "status": row["status"], "counts": row, "started_wall": started_wall, "rss_first": rss_first or {},
            "rss_end": sender.rss_mb(), "rss_samples": samples,
            "cpu": send_bench.CpuMeter.used(cpu_before, cpu_after), "load": os.getloadavg()[0]}


# --- 6. After completion -----------------------------------------------------------------------------------

def after_step(campaign_id, n, client, args, result):
    from django.urls import reverse

    from benchmarks.sent_campaign import timed

    say(f"== 6. After the send ({result['status']}); {load()}")
    with_cursor(lambda c: c.execute("VACUUM ANALYZE campaigns_deliverylog"))
    disk(n)
    url = reverse("admin:campaigns_campaign_follow_up", args=[campaign_id])
    samples = []
    for _ in range(3):
        seconds, response = timed(lambda: client.get(url))
        assert response.status_code == 200, response.status_code
        samples.append(seconds)
    say(f"   follow-up page (every group counted): first {samples[0]:.2f} s, median of 3 "
        f"{statistics.median(samples):.2f} s (target <= 10 s); {load()}")
    if args.skip_exports:
        return
    if args.api_export:
        os.environ["SCALE_API_EXPORT"] = "1"
    child_step("exports", campaign_id)


def disk(n):
    say(f"== 6a. Disk per recipient (pg_total_relation_size: heap + indexes + TOAST, after VACUUM) over {n:,}:")
    total = 0
    for table in ("campaigns_recipient", "campaigns_deliverylog", "campaigns_sendbatch"):
        size, heap = with_cursor(lambda c: (c.execute(
            "SELECT pg_total_relation_size(%s), pg_relation_size(%s)", [table, table]), c.fetchone())[1])
        total += size
        say(f"   {table:24} {size / 2**20:9,.0f} MB = {size / n:6.0f} bytes/recipient "
            f"(heap {heap / n:.0f}, indexes and TOAST {(size - heap) / n:.0f})")
    say(f"   all three               {total / 2**20:9,.0f} MB = {total / n:6.0f} bytes/recipient")
    for name, size in with_cursor(lambda c: (c.execute(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
            "WHERE indrelid IN ('campaigns_recipient'::regclass, 'campaigns_deliverylog'::regclass, "
            "'campaigns_sendbatch'::regclass) ORDER BY 2 DESC"), c.fetchall())[1]):
        say(f"      index {name:40} {size / n:5.0f} bytes/recipient")


def study(campaign_id):
    """For docs/scaling.md: BRIN against btree on sent_at, and the campaign's rows alone (a partition)."""
    say(f"== 7. Partitioning and BRIN at this size (for docs/scaling.md); {load()}")
    c = campaign_id
    window = ("SELECT count(*) FROM {table} WHERE sent_at >= (SELECT max(sent_at) FROM campaigns_deliverylog) "
              "- interval '60 seconds'")
    with_cursor(lambda cur: cur.execute("SET max_parallel_workers_per_gather = 0"))
    for kind in ("btree", "brin"):
        seconds = timed_sql(f"CREATE INDEX bench_sent_{kind} ON campaigns_deliverylog USING {kind} (sent_at)")
        size = scalar(f"SELECT pg_relation_size('bench_sent_{kind}')")
        with_cursor(lambda cur: cur.execute("ANALYZE campaigns_deliverylog"))
        query = window.format(table="campaigns_deliverylog")
        with_cursor(lambda cur: cur.execute("SET enable_seqscan = off"))  # the index, whatever the planner's choice
        plan = explain(query)
        run_s = median_sql(query)
        with_cursor(lambda cur: cur.execute("RESET enable_seqscan"))
        say(f"   {kind:5} index on sent_at: {size / 2**20:8.1f} MB, built in {seconds:.1f} s; last-minute count "
            f"{run_s * 1000:.1f} ms with sequential scans off ({plan})")
        with_cursor(lambda cur: cur.execute(f"DROP INDEX bench_sent_{kind}"))
    queries = {
        "per-campaign status counts": ("SELECT status, count(*) FROM {table} WHERE campaign_id = %s GROUP BY status"
                                       % c),
        "follow-up 'did not open' count": ("SELECT count(*) FROM {table} WHERE campaign_id = %s AND status = 'sent' "
                                           "AND opened_at IS NULL" % c),
    }
    plain = {name: median_sql(q.format(table="campaigns_deliverylog")) for name, q in queries.items()}
    seconds = timed_sql(f"CREATE TABLE bench_dlog_part AS SELECT * FROM campaigns_deliverylog WHERE campaign_id = {c}")
    timed_sql("CREATE INDEX ON bench_dlog_part (campaign_id, status, id)")
    with_cursor(lambda cur: cur.execute("VACUUM ANALYZE bench_dlog_part"))
    others = scalar(f"SELECT count(*) FROM campaigns_deliverylog WHERE campaign_id <> {c}")
    say(f"   the campaign's rows copied alone (what its partition would hold) in {seconds:.1f} s; "
        f"{others:,} rows of other campaigns in the whole table")
    for name, q in queries.items():
        alone = median_sql(q.format(table="bench_dlog_part"))
        say(f"   {name}: whole table {plain[name] * 1000:.0f} ms, the campaign alone {alone * 1000:.0f} ms "
            f"= {alone / plain[name]:.2f}x ({explain(q.format(table='campaigns_deliverylog'))})")
    with_cursor(lambda cur: cur.execute("DROP TABLE bench_dlog_part"))
    with_cursor(lambda cur: cur.execute("RESET max_parallel_workers_per_gather"))


# --- Helpers -------------------------------------------------------------------------------------------------

def with_cursor(call):
    from django.db import connection

    with connection.cursor() as cursor:
        return call(cursor)


def scalar(sql):
    return with_cursor(lambda c: (c.execute(sql), c.fetchone()[0])[1])


def timed_sql(sql):
    began = time.perf_counter()
    with_cursor(lambda c: c.execute(sql))
    return time.perf_counter() - began


def median_sql(sql, repeat=3):
    with_cursor(lambda c: c.execute(sql))  # warm
    return statistics.median(timed_sql(sql) for _ in range(repeat))


def explain(sql):
    lines = with_cursor(lambda c: (c.execute("EXPLAIN " + sql), [r[0] for r in c.fetchall()])[1])
    return "; ".join(line.strip().split("  (cost")[0].lstrip("-> ") for line in lines
                     if "Scan" in line or "Aggregate" in line)[:200]


def settle():
    send_bench.settle_database()


def psql(command):
    subprocess.run([PSQL, os.environ["DATABASE_URL"], "-qAt", "-v", "ON_ERROR_STOP=1", "-c", command], check=True,
                   stdout=subprocess.DEVNULL)


def run(cmd):
    result = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd[:5]))} failed:\n{result.stderr[-3000:]}")
    return result.stdout


if __name__ == "__main__":
    sys.exit(main())
