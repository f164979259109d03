"""docker-compose.pgbouncer.yml: rendered by docker-compose, and its pooling settings run for real.

The test runs Debian's pgbouncer (scripts/ensure_pgbouncer.sh, which `make test` runs) with
pgbouncer/pgbouncer.ini, the very file the override mounts, in transaction mode in front of the test
database, and sends a campaign through it with real scheduler and sender workers. Debian 12 ships
PgBouncer 1.18, before max_prepared_statements (1.21): with it the workers run with
SEND_PREPARED_STATEMENTS=False; with PgBouncer >= 1.21 the test adds pgbouncer/compose.ini's
max_prepared_statements line and keeps the ledger's prepared statements on.
"""

import collections
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from django.db import connection

from campaigns import services
from campaigns.models import Campaign
from tests.deploy import tools
from tests.deploy.conftest import PRODUCTION_SECRETS, write_env_file
from tests.sending.test_pipeline import assert_exactly_once, make_campaign, wait_until_finished

POOLING_INI = tools.ROOT / "pgbouncer" / "pgbouncer.ini"
COMPOSE_INI = tools.ROOT / "pgbouncer" / "compose.ini"
THROUGH_PGBOUNCER = ("celery_worker_sender", "celery_worker_scheduler", "celery_worker_sender_host")


@pytest.fixture(scope="module")
def pgbouncer_compose(docker_compose, tmp_path_factory):
    env_file = write_env_file(tmp_path_factory.mktemp("pgbouncer") / "prod.env",
                              {**PRODUCTION_SECRETS, "FLOWER_USER": "ops", "SENDGRID_API_KEY": "SG.key"})
    result = subprocess.run([docker_compose, "--env-file", str(env_file), "-f", "docker-compose.prod.yml",
                             "-f", "docker-compose.pgbouncer.yml", "config"], cwd=tools.ROOT, capture_output=True,
                            text=True, env={"PATH": os.environ.get("PATH", os.defpath),
                                            "HOME": os.environ.get("HOME", "/root")})
    assert result.returncode == 0, result.stderr
    return tools.yaml_to_data(result.stdout, docker_compose)


def test_the_override_puts_pgbouncer_between_the_senders_and_postgresql(pgbouncer_compose):
    services_ = pgbouncer_compose["services"]
    mounts = {v["target"] if isinstance(v, dict) else v.split(":")[1]: v["source"] if isinstance(v, dict)
              else v.split(":")[0] for v in services_["pgbouncer"]["volumes"]}
    assert Path(mounts["/etc/pgbouncer/pooling.ini"]) == POOLING_INI
    assert Path(mounts["/etc/pgbouncer/pgbouncer.ini"]) == COMPOSE_INI
    assert "%include /etc/pgbouncer/pooling.ini" in COMPOSE_INI.read_text()
    for name in THROUGH_PGBOUNCER:
        env = services_[name]["environment"]
        assert "@pgbouncer:6432/" in env["DATABASE_URL"], name
        assert env["DB_DISABLE_SERVER_SIDE_CURSORS"] == "True"
        assert env["SEND_PREPARED_STATEMENTS"] == "True"
        assert env["SECRET_KEY"] == PRODUCTION_SECRETS["SECRET_KEY"]  # the rest of the environment is kept
    for name in ("web", "celery_worker_imports", "celery_worker_bounces", "celery_worker_webhooks"):
        assert "@db:5432/" in services_[name]["environment"]["DATABASE_URL"], name
    assert services_["celery_worker_sender"]["depends_on"]["pgbouncer"] == {"condition": "service_healthy"}


def pgbouncer_version(binary):
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    return tuple(int(part) for part in re.search(r"PgBouncer (\d+)\.(\d+)", out).groups())


@pytest.fixture
def pgbouncer(transactional_db):
    """Debian's pgbouncer with pgbouncer/pgbouncer.ini in front of the test database; yields
    (database URL through it, admin console URL, prepared statements kept?)."""
    binary = shutil.which("pgbouncer", path=tools.SBIN_PATH)
    if not binary:
        pytest.skip("pgbouncer is missing: scripts/ensure_pgbouncer.sh installs it (as root)")
    prepared = pgbouncer_version(binary) >= (1, 21)
    s = connection.settings_dict
    port = tools.free_port()
    # A directory the postgres user can read: as root, pgbouncer runs as postgres (it refuses root).
    directory = Path(tempfile.mkdtemp(prefix="pgbouncer-test-"))
    directory.chmod(0o755)
    (directory / "users.txt").write_text(f'"{s["USER"]}" ""\n')
    extra = re.search(r"^max_prepared_statements = \d+$", COMPOSE_INI.read_text(), re.M).group(0) if prepared else ""
    ini = directory / "pgbouncer.ini"
    ini.write_text(f"[databases]\n* = host={s['HOST'] or '127.0.0.1'} port={s['PORT']}\n\n"
                   f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
                   f"auth_type = trust\nauth_file = {directory / 'users.txt'}\nadmin_users = {s['USER']}\n"
                   f"%include {POOLING_INI}\n{extra}\n")
    cmd = [binary, str(ini)]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    server = tools.Server("pgbouncer", cmd, port, directory / "pgbouncer.log").start()
    try:
        yield (f"postgres://{s['USER']}@127.0.0.1:{port}/{s['NAME']}",
               f"postgres://{s['USER']}@127.0.0.1:{port}/pgbouncer", prepared)
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def admin_console(url, command):
    """Rows of a PgBouncer admin console command, as dicts (psql: the console speaks the simple protocol only)."""
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    out = subprocess.run([psql, url, "-AF", "\t", "-c", command], capture_output=True, text=True, check=True).stdout
    header, *rows = out.strip().splitlines()[:-1]  # the last line is "(N rows)"
    return [dict(zip(header.split("\t"), row.split("\t"))) for row in rows]


def test_a_campaign_goes_out_through_pgbouncer_in_transaction_mode(pgbouncer, start_worker, fake_sendgrid):
    url, console, prepared = pgbouncer
    assert {"key": "pool_mode", "value": "transaction"}.items() <= next(
        row for row in admin_console(console, "SHOW CONFIG") if row["key"] == "pool_mode").items()
    campaign = make_campaign(300, batch_size=50)
    start_worker(["scheduler", "senders"], concurrency=2, DATABASE_URL=url, DB_DISABLE_SERVER_SIDE_CURSORS="True",
                 SEND_PREPARED_STATEMENTS=str(prepared))

    services.send_now(campaign.pk)
    wait_until_finished(campaign)

    assert campaign.status == Campaign.Status.COMPLETED
    assert_exactly_once(campaign, collections.Counter(fake_sendgrid.recipients()))
    # The workers' transactions went through PgBouncer, over fewer server connections than clients.
    stats = next(row for row in admin_console(console, "SHOW STATS") if row["database"] == connection.settings_dict["NAME"])
    assert int(stats["total_xact_count"]) > 6  # at least one per batch
