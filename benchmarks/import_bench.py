"""Recipient import benchmark: end to end, against raw `psql \\copy` and Django's bulk_create, in one run.

    python benchmarks/import_bench.py --rows 1000000          # a generated CRM-style CSV
    python benchmarks/import_bench.py --xlsx 100000           # the same for an Excel workbook

It generates the file, imports it with `campaigns.importing.service.import_recipients` in a fresh
process (timing the call, reading the file included, and that process's peak RSS), exports the rows
that ended up in the table, then times `psql \\copy` of exactly those rows into the same (emptied)
table and `bulk_create(batch_size=1000)` of them. The last line is ratio_vs_copy=X.XX (import / copy).

The work happens in a scratch database, created on the server of DATABASE_URL and dropped at the end;
without DATABASE_URL a throwaway PostgreSQL is started (as `make test` does) and stopped afterwards.
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=0, help="rows of the generated CSV")
    parser.add_argument("--xlsx", type=int, default=0, help="rows of the generated XLSX")
    parser.add_argument("--skip-bulk-create", action="store_true", help="skip the (slow) bulk_create baseline")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)
    if not args.rows and not args.xlsx:
        parser.error("give --rows N and/or --xlsx N")
    with scratch_database() as env, tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
        env["MEDIA_ROOT"] = str(Path(tmp) / "media")
        run([sys.executable, "manage.py", "migrate", "-v", "0"], env)
        ratios = []
        for kind, rows in (("xlsx", args.xlsx), ("csv", args.rows)):
            if rows:
                ratios.append(bench(kind, rows, Path(tmp), env, args.skip_bulk_create))
    print(f"ratio_vs_copy={ratios[-1]:.2f}")


def bench(kind, rows, tmp, env, skip_bulk_create) -> float:
    from benchmarks.corpus import write_csv, write_xlsx

    path = tmp / f"recipients-{rows}.{kind}"
    print(f"== {kind.upper()}, {rows:,} rows: generating {path.name}", flush=True)
    (write_xlsx if kind == "xlsx" else write_csv)(path, rows)
    print(f"   {path.stat().st_size / 2**20:,.1f} MB", flush=True)

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

    seconds = result["seconds"]
    print(f"   import end to end : {seconds:8.2f} s  {rows / seconds:>10,.0f} rows/s  "
          f"({result['summary']}; peak RSS {result['peak_rss_mb']} MB)")
    print(f"   psql \\copy        : {copy_seconds:8.2f} s  {imported / copy_seconds:>10,.0f} rows/s  "
          f"(the {imported:,} imported rows)")
    if bulk_seconds is not None:
        print(f"   bulk_create(1000) : {bulk_seconds:8.2f} s  {imported / bulk_seconds:>10,.0f} rows/s")
        print(f"   bulk_create / import = {bulk_seconds / seconds:.1f}x")
    ratio = seconds / copy_seconds
    print(f"   import / psql \\copy = {ratio:.2f}", flush=True)
    return ratio


# --- Child processes: a fresh interpreter for each measured step ---------------------------------


def child(step, path):
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailer_project.settings")
    django.setup()
    from campaigns.models import Campaign

    if step == "import":
        from campaigns.importing.service import import_recipients

        campaign = Campaign.objects.create(name="Benchmark", subject="Hello", html_body="<p>Hi</p>")
        start = time.perf_counter()
        report = import_recipients(campaign, path)
        seconds = time.perf_counter() - start
        peak = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) // 1024
        print(json.dumps({"seconds": seconds, "imported": report.imported, "summary": report.summary_line(),
                          "peak_rss_mb": peak}))
    elif step == "bulk_create":
        print(json.dumps({"seconds": bulk_create_from(Path(path))}))


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
            from scripts.devstack import Postgres, free_port

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
