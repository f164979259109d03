"""scripts/devstack.py: the throwaway PostgreSQL and Redis it starts go when it is stopped."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not Path("/usr/lib/postgresql/15/bin/postgres").exists(),
                                reason="needs PostgreSQL 15, as `make test` has")


def servers(log_text):
    """{pid: command line} of the PostgreSQL (its postmaster names its data directory) and the Redis
    (its title names its port) that the launcher's log says it started."""
    data = re.search(r"Initialising PostgreSQL in (\S+)", log_text)
    port = re.search(r"Starting Redis on (127\.0\.0\.1:\d+)", log_text)
    marks = [mark for mark in (data and f"bin/postgres -D {data.group(1)}", port and f"redis-server {port.group(1)}")
             if mark]
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if any(mark in command for mark in marks):
                found[int(proc.name)] = command
    return found


def test_a_sigterm_to_the_whole_process_group_stops_the_servers_even_when_it_comes_twice(tmp_path):
    # As `timeout`, a supervisor or `kill -- -PGID` stop it: every process of the group gets SIGTERM, and the
    # others pass it on, so a second one reaches the launcher while it is stopping its servers. It used to
    # cut the stop short and leave PostgreSQL running (and the next `make run` found its port taken).
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    log = tmp_path / "devstack.log"
    with open(log, "wb") as output:
        launcher = subprocess.Popen([sys.executable, "scripts/devstack.py", "exec", "sleep", "120"], cwd=ROOT,
                                    env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(servers(log.read_text())) < 2:  # the postmaster and Redis
            assert launcher.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        time.sleep(1)  # the launcher runs its command now

        os.killpg(launcher.pid, signal.SIGTERM)
        # Redis stops first, then PostgreSQL (pg_ctl waits for its shutdown): the second SIGTERM comes in between.
        while any("redis-server" in command for command in servers(log.read_text()).values()):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.01)
        os.killpg(launcher.pid, signal.SIGTERM)
        launcher.wait(60)

        deadline = time.monotonic() + 10  # a server's exit may follow its launcher's by a moment
        while servers(log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert servers(log.read_text()) == {}, log.read_text()
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
        for pid in servers(log.read_text()):  # what a failure left running: a fast shutdown
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass
