"""Recipient import benchmark: the command line and the admin, against raw `psql \\copy`, in one run.

    make bench-import                                          # the defaults below
    python benchmarks/import_bench.py --rows 1000000 --xlsx 100000 --wide-xlsx 1000000

For each generated file (a CRM-style CSV of --rows rows, an XLSX of --xlsx rows):

1. **command line**: `campaigns.audience.importing.service.import_recipients` in a fresh process, timed (reading the
   file included), with that process's peak RSS;
2. **psql \\copy** of exactly the rows that ended up in the table, into the same (emptied) table: the
   baseline; then `bulk_create(batch_size=1000)` of them (skip with --skip-bulk-create);
3. **admin**: the path staff use. A real imports worker (`celery -A mailer_project worker -Q imports
   --concurrency 1`, as in the Procfile) is started; the admin's own upload view is POSTed the file
   (Django's test client, logged in as a superuser), then its status JSON is polled until the import
   succeeded. Timed from the POST to `succeeded`; the upload, queue and import parts are shown, and the
   peak RSS of the worker's pool process that ran the import.

--wide-xlsx N adds a 1,000,000 × 10-column workbook (by default) through the admin path only, to show
the worker's peak memory against the 600 MB target. Generated workbooks are cached in
$TMPDIR/mailer-benchmark-files/ (a million rows take a while to write).

Each ratio is the import's time divided by psql \\copy's in the same run. The last line is
ratio_vs_copy=X.XX (the command line, last file) admin_ratio_vs_copy=X.XX.

The work happens in a scratch database, created on the server of DATABASE_URL and dropped at the end;
without DATABASE_URL a throwaway PostgreSQL is started (as `make test` does) and stopped afterwards.
The admin path needs Redis (REDIS_URL; `make bench-import` starts a throwaway one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PSQL = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
WIDE_COLUMNS = 10
MEMORY_TARGET_MB = 600


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the generated CSV (0: none)")
    parser.add_argument("--xlsx", type=int, default=100_000, help="rows of the generated XLSX (0: none)")
    parser.add_argument("--wide-xlsx", type=int, default=1_000_000,
                        help=f"rows of a {WIDE_COLUMNS}-column XLSX imported through the admin only (0: none)")
    parser.add_argument("--skip-bulk-create", action="store_true", help="skip the (slow) bulk_create baseline")
    parser.add_argument("--skip-admin", action="store_true", help="only the command line and the baselines")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)
    if not (args.rows or args.xlsx or args.wide_xlsx):
        parser.error("give --rows N, --xlsx N and/or --wide-xlsx N")
    with scratch_database() as env, tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
        env["MEDIA_ROOT"] = str(Path(tmp) / "media")
        env["IMPORT_MAX_UPLOAD_MB"] = "1024"  # the generated files, whatever their size
        run([sys.executable, "manage.py", "migrate", "-v", "0"], env)
        ratios = []
        for kind, rows in (("xlsx", args.xlsx), ("csv", args.rows)):
            if rows:
                ratios.append(bench(kind, rows, Path(tmp), env, args.skip_bulk_create, args.skip_admin))
        if args.wide_xlsx and not args.skip_admin:
            bench_wide_xlsx(args.wide_xlsx, env)
    if ratios:
        cli, admin = ratios[-1]
        print(f"ratio_vs_copy={cli:.2f}" + (f" admin_ratio_vs_copy={admin:.2f}" if admin else ""))


def generated(kind, rows, tmp, columns=7) -> Path:
    from benchmarks.corpus import cached_xlsx, write_csv

    if kind == "xlsx":
        path = cached_xlsx(rows, columns)
    else:
        path = tmp / f"recipients-{rows}.csv"
        write_csv(path, rows)
    print(f"   {path.name}: {path.stat().st_size / 2**20:,.1f} MB", flush=True)
    return path


def bench(kind, rows, tmp, env, skip_bulk_create, skip_admin) -> tuple[float, float | None]:
    print(f"== {kind.upper()}, {rows:,} rows", flush=True)
    path = generated(kind, rows, tmp)

    truncate(env)
    result = json.loads(run([sys.executable, __file__, "--child", "import", str(path)], env).splitlines()[-1])
    imported = result["imported"]
    export = tmp / "final-rows.copy"
    psql(env, f"\\copy (SELECT campaign_id, email, first_name, last_name, data FROM campaigns_recipient "
              f"ORDER BY id) TO '{export}'")

    truncate(env)
    start = time.perf_counter()
    psql(env, f"\\copy campaigns_recipient (campaign_id, email, first_name, last_name, data) FROM '{export}'")
    copy_seconds = time.perf_counter() - start

    bulk_seconds = None
    if not skip_bulk_create:
        truncate(env)
        bulk_seconds = json.loads(run([sys.executable, __file__, "--child", "bulk_create", str(export)], env)
                                  .splitlines()[-1])["seconds"]
    admin = None
    if not skip_admin:
        truncate(env)
        admin = through_the_admin(path, env)

    seconds = result["seconds"]
    print(f"   command line      : {seconds:8.2f} s  {rows / seconds:>10,.0f} rows/s  "
          f"({result['summary']}; peak RSS {result['peak_rss_mb']} MB)")
    if admin:
        print(f"   admin, upload → succeeded: {admin['seconds']:8.2f} s  {rows / admin['seconds']:>10,.0f} rows/s  "
              f"(upload {admin['upload_seconds']:.2f} s, queued {admin['queued_seconds']:.2f} s, "
              f"import {admin['import_seconds']:.2f} s; worker peak RSS {admin['worker_peak_rss_mb']} MB)")
    print(f"   psql \\copy        : {copy_seconds:8.2f} s  {imported / copy_seconds:>10,.0f} rows/s  "
          f"(the {imported:,} imported rows)")
    if bulk_seconds is not None:
        print(f"   bulk_create(1000) : {bulk_seconds:8.2f} s  {imported / bulk_seconds:>10,.0f} rows/s")
        print(f"   bulk_create / command line = {bulk_seconds / seconds:.1f}x")
    ratio = seconds / copy_seconds
    admin_ratio = admin["seconds"] / copy_seconds if admin else None
    print(f"   command line / psql \\copy = {ratio:.2f}"
          + (f"    admin / psql \\copy = {admin_ratio:.2f}" if admin else ""), flush=True)
    return ratio, admin_ratio


def bench_wide_xlsx(rows, env):
    print(f"== XLSX, {rows:,} rows × {WIDE_COLUMNS} columns, through the admin", flush=True)
    path = generated("xlsx", rows, None, WIDE_COLUMNS)
    truncate(env)
    admin = through_the_admin(path, env)
    verdict = "under" if admin["worker_peak_rss_mb"] < MEMORY_TARGET_MB else "OVER"
    print(f"   admin, upload → succeeded: {admin['seconds']:8.2f} s  ({admin['summary']})")
    print(f"   worker peak RSS   : {admin['worker_peak_rss_mb']} MB ({verdict} the {MEMORY_TARGET_MB} MB target)",
          flush=True)


def through_the_admin(path: Path, env) -> dict:
    """Start an imports worker, upload PATH through the admin's view, wait for `succeeded`."""
    from localservers.workers import ALONE, CeleryWorker

    worker = CeleryWorker(["imports"], Path(env["MEDIA_ROOT"]).parent, concurrency=1, env=env, host="bench",
                          log_name="imports-worker.log", options=ALONE).start()
    try:
        result = json.loads(run([sys.executable, __file__, "--child", "admin", str(path), worker.name], env)
                            .splitlines()[-1])
        result["worker_peak_rss_mb"] = max(peak_rss_mb(pid) for pid in worker.process_ids()[1:])
        return result
    finally:
        worker.stop(60)


def peak_rss_mb(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmHWM:")[1].split()[0]) // 1024


# --- Child processes: a fresh interpreter for each measured step ---------------------------------


def child(step, path, worker_name=None):
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailer_project.settings")
    django.setup()
    from campaigns.models import Campaign

    if step == "import":
        from campaigns.audience.importing.service import import_recipients

        campaign = Campaign.objects.create(name="Benchmark", subject="Hello", html_body="<p>Hi</p>")
        start = time.perf_counter()
        report = import_recipients(campaign, path)
        seconds = time.perf_counter() - start
        peak = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) // 1024
        print(json.dumps({"seconds": seconds, "imported": report.imported, "summary": report.summary_line(),
                          "peak_rss_mb": peak}))
    elif step == "bulk_create":
        print(json.dumps({"seconds": bulk_create_from(Path(path))}))
    elif step == "admin":
        print(json.dumps(admin_upload(Path(path), worker_name)))


def admin_upload(path: Path, worker_name: str) -> dict:
    """POST the file to the admin's upload view and poll its status JSON until the import finished."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    from campaigns.models import Campaign, RecipientImport
    from mailer_project.celery import app

    deadline = time.monotonic() + 120
    while not app.control.ping(destination=[worker_name], timeout=1):
        if time.monotonic() > deadline:
            sys.exit(f"the imports worker {worker_name} did not answer")
    user, _ = get_user_model().objects.get_or_create(username="bench-admin", defaults={
        "is_staff": True, "is_superuser": True})
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    campaign = Campaign.objects.create(name="Benchmark (admin)", subject="Hello", html_body="<p>Hi</p>")
    start = time.perf_counter()
    with path.open("rb") as f:
        response = client.post(reverse("admin:campaigns_campaign_import", args=[campaign.pk]), {"file": f})
    uploaded = time.perf_counter()
    assert response.status_code == 302, response.content[:2000]
    record = RecipientImport.objects.get(campaign=campaign)
    status_url = reverse("admin:campaigns_campaign_import_status_json", args=[record.pk])
    while not (status := client.get(status_url).json())["finished"]:
        time.sleep(0.1)
    seconds = time.perf_counter() - start
    if status["status"] != "succeeded":
        sys.exit(f"the import failed: {status['error']}")
    record.refresh_from_db()
    return {"seconds": seconds, "upload_seconds": uploaded - start,
            "queued_seconds": (record.started_at - record.created_at).total_seconds(),
            "import_seconds": (record.finished_at - record.started_at).total_seconds(),
            "summary": f"imported={status['imported']} invalid={status['invalid']}"}


def bulk_create_from(export: Path) -> float:
    from django.db import transaction

    from campaigns.models import Recipient

    recipients = []
    with export.open(encoding="utf-8") as f:
        for line in f:
            campaign_id, email, first, last, data = line.rstrip("\n").split("\t")
            recipients.append(Recipient(campaign_id=int(campaign_id), email=email, first_name=_unescape(first),
                                        last_name=_unescape(last), data=json.loads(_unescape(data))))
    start = time.perf_counter()
    with transaction.atomic():
        Recipient.objects.bulk_create(recipients, batch_size=1000)
    return time.perf_counter() - start


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape")


# --- Database --------------------------------------------------------------------------------------


class scratch_database:
    """A database of its own, on DATABASE_URL's server or on a throwaway one; yields the env to use."""

    def __enter__(self):
        self.stop = None
        env = dict(os.environ, DEBUG="True", DB_CONN_MAX_AGE="0")
        env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")  # imports never touch Redis
        if not env.get("DATABASE_URL"):
            from localservers.ports import free_port
            from scripts.devstack import Postgres

            self.tmp = tempfile.mkdtemp(prefix="import-bench-pg-")
            os.chmod(self.tmp, 0o755)
            server = Postgres(Path(self.tmp) / "data", free_port(), throwaway=True)
            server.start()
            self.stop = server.stop
            env["DATABASE_URL"] = server.url
        parts = urlsplit(env["DATABASE_URL"])
        self.admin_url = env["DATABASE_URL"]
        self.name = f"{parts.path.lstrip('/')}_import_bench"
        subprocess.run([PSQL, self.admin_url, "-qc", f"DROP DATABASE IF EXISTS {self.name}"], check=True,
                       stderr=subprocess.DEVNULL)
        subprocess.run([PSQL, self.admin_url, "-qc", f"CREATE DATABASE {self.name}"], check=True)
        env["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{self.name}"))
        return env

    def __exit__(self, *exc):
        subprocess.run([PSQL, self.admin_url, "-qc", f"DROP DATABASE IF EXISTS {self.name}"])
        if self.stop:
            self.stop()
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False


def truncate(env):
    """An empty table, and no dirty pages left from the previous step to slow the next one down."""
    psql(env, "TRUNCATE campaigns_recipient CASCADE")
    psql(env, "CHECKPOINT", check=False)  # needs a superuser; the throwaway server's user is one


def psql(env, command, check=True):
    subprocess.run([PSQL, env["DATABASE_URL"], "-qAt", "-v", "ON_ERROR_STOP=1", "-c", command], check=check,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run(cmd, env) -> str:
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd[:4]))} failed:\n{result.stderr[-3000:]}")
    return result.stdout


if __name__ == "__main__":
    main()
