"""Real Celery worker processes for tests, against the test database and the test Redis."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import kombu.exceptions
import kombu.pools
import redis
from django.db import connection

from campaigns.localservers import stop_when_parent_dies
from mailer_project.celery import app

ROOT = Path(__file__).resolve().parent.parent


def reset_broker_pool():
    """Close this process's pooled broker connections; the app opens a fresh pool on next use."""
    kombu.pools.reset()  # closes every pooled connection and forgets the pools
    app._pool = None
    app.amqp._producer_pool = None


def test_database_url():
    """The URL of the database pytest-django created, for processes outside this one."""
    s = connection.settings_dict
    auth = quote(s["USER"] or "")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"])
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def service_env(**extra):
    env = dict(os.environ, DATABASE_URL=test_database_url(), DB_CONN_MAX_AGE="0", PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


class CeleryWorker:
    """`celery -A mailer_project worker` in its own process group, so kill() takes its children too."""

    def __init__(self, queues, log_dir, concurrency=2, pool="prefork", env=None, app_module="mailer_project",
                 module="celery"):
        self.name = f"{'-'.join(queues)}-{uuid.uuid4().hex[:6]}@test"
        self.log_path = Path(log_dir) / f"{self.name}.log"
        # Fault injection, test-only: APP_MODULE may be a wrapper of mailer_project's app that patches a
        # step; MODULE runs the celery command line (tests.support.crashing_worker wraps it with a hook).
        self.cmd = [sys.executable, "-m", module, "-A", app_module, "worker", "-Q", ",".join(queues),
                    "-n", self.name, "--concurrency", str(concurrency), "--pool", pool, "--loglevel", "INFO",
                    "--without-gossip", "--without-mingle"]
        self.env = env or service_env()
        self.proc = None

    def start(self, timeout=60):
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=open(self.log_path, "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=stop_when_parent_dies)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited early:\n{self.log_tail()}")
            try:
                if app.control.ping(destination=[self.name], timeout=0.5):
                    return self
            except (redis.ConnectionError, kombu.exceptions.OperationalError, OSError):
                reset_broker_pool()  # a stale pooled connection (e.g. Redis restarted): retry
        raise RuntimeError(f"worker {self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def pool_pids(self):
        """The pids of the worker's pool processes, which run the tasks."""
        stats = app.control.inspect(destination=[self.name], timeout=5).stats() or {}
        return stats[self.name]["pool"]["processes"]

    def log_tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self):
        """SIGKILL the worker and its pool children at once, as a crashed machine would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
