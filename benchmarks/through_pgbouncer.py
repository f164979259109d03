"""Run a command with DATABASE_URL pointing through PgBouncer in transaction mode: Debian's pgbouncer
(scripts/ensure_pgbouncer.sh) with pgbouncer/pgbouncer.ini, the pooling settings docker-compose.pgbouncer.yml
uses, in front of the PostgreSQL of DATABASE_URL.

    make bench-send-pgbouncer ARGS="--recipients 200000"
    python scripts/devstack.py exec .venv/bin/python benchmarks/through_pgbouncer.py CMD ...

The command and every process it starts (the benchmark's workers) connect through PgBouncer, with
DB_DISABLE_SERVER_SIDE_CURSORS=True, and SEND_PREPARED_STATEMENTS=True when the PgBouncer is 1.21 or
later (max_prepared_statements from pgbouncer/compose.ini added), else False (Debian 12 ships 1.18,
on which the ledger's prepared statements fail with `prepared statement "_pg3_0" already exists`).
At the end PgBouncer's own CPU time during the command, SHOW STATS and SHOW POOLS are printed.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
POOLING_INI = ROOT / "pgbouncer" / "pgbouncer.ini"
COMPOSE_INI = ROOT / "pgbouncer" / "compose.ini"
PSQL = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"


def main(argv):
    from localservers.ports import free_port, wait_for_port

    if not argv:
        sys.exit(__doc__)
    binary = shutil.which("pgbouncer", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if not binary:
        sys.exit("pgbouncer is missing: sh scripts/ensure_pgbouncer.sh installs Debian's (as root)")
    version = tuple(int(x) for x in re.search(r"PgBouncer (\d+)\.(\d+)", subprocess.run(
        [binary, "--version"], capture_output=True, text=True).stdout).groups())
    prepared = version >= (1, 21)
    url = urlsplit(os.environ["DATABASE_URL"])
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="pgbouncer-bench-"))
    directory.chmod(0o755)
    (directory / "users.txt").write_text(f'"{url.username}" ""\n')
    extra = re.search(r"^max_prepared_statements = \d+$", COMPOSE_INI.read_text(), re.M).group(0) if prepared else ""
    ini = directory / "pgbouncer.ini"
    ini.write_text(f"[databases]\n* = host={url.hostname} port={url.port}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n"
                   f"listen_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {directory / 'users.txt'}\n"
                   f"admin_users = {url.username}\n%include {POOLING_INI}\n{extra}\n")
    cmd = [binary, str(ini)]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    log = open(directory / "pgbouncer.log", "wb")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, server, name="pgbouncer", log_path=directory / "pgbouncer.log")
        through = urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{port}"))
        print(f"==> PgBouncer {version[0]}.{version[1]} on 127.0.0.1:{port} (pool_mode transaction, "
              f"{POOLING_INI.relative_to(ROOT)}) in front of {url.hostname}:{url.port}; "
              f"SEND_PREPARED_STATEMENTS={prepared}", flush=True)
        env = dict(os.environ, DATABASE_URL=through, DB_DISABLE_SERVER_SIDE_CURSORS="True",
                   SEND_PREPARED_STATEMENTS=str(prepared))
        from benchmarks.send_bench import tree_cpu_seconds

        cpu_before = tree_cpu_seconds(server.pid)
        status = subprocess.run(argv, env=env).returncode
        print(f"==> PgBouncer's own CPU during the command: {tree_cpu_seconds(server.pid) - cpu_before:.1f} s "
              f"(not in the command's per-part figures)", flush=True)
        console = urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{port}", path="/pgbouncer"))
        for command in ("SHOW STATS", "SHOW POOLS"):
            out = subprocess.run([PSQL, console, "-c", command], capture_output=True, text=True).stdout
            print(f"==> PgBouncer {command}:\n{out}", flush=True)
        return status
    finally:
        os.killpg(server.pid, 15)
        for _ in range(50):
            if server.poll() is not None:
                break
            time.sleep(0.1)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
