"""A real `celery -A mailer_project worker` process, for tests and benchmarks.

The app (mailer_project.celery) is imported when a worker starts, not with this module: the ping that
tells a worker is ready needs the broker settings of the process that starts it.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from localservers.ports import log_tail
from localservers.serving import REPO_ROOT, stop_when_parent_dies

# Tests run one worker at a time per queue: they skip the cluster chatter, and mingle's one-second wait.
ALONE = ("--without-gossip", "--without-mingle")


def reset_broker_pool():
    """Close this process's pooled broker connections; the app opens a fresh pool on next use."""
    import kombu.pools

    from mailer_project.celery import app

    kombu.pools.reset()  # closes every pooled connection and forgets the pools
    app._pool = None
    app.amqp._producer_pool = None


class CeleryWorker:
    """`celery -A APP_MODULE worker -Q QUEUES` in its own process group, so kill() takes its children too;
    SIGTERMed if the starting process dies. Output goes to LOG_DIR/LOG_NAME (default: the node name)."""

    def __init__(self, queues, log_dir, *, concurrency=2, env=None, name=None, host="local", log_name=None,
                 pool="prefork", options=(), app_module="mailer_project", module="celery"):
        self.name = name or f"{'-'.join(queues)}-{uuid.uuid4().hex[:6]}@{host}"
        self.log_path = Path(log_dir) / (log_name or f"{self.name}.log")
        # Fault injection, test-only: APP_MODULE may be a wrapper of mailer_project's app that patches a
        # step; MODULE runs the celery command line (tests.support.crashing_worker wraps it with a hook).
        self.cmd = [sys.executable, "-m", module, "-A", app_module, "worker", "-Q", ",".join(queues),
                    "-n", self.name, "--concurrency", str(concurrency), "--pool", pool, "--loglevel", "INFO",
                    *options]
        self.env = env
        self.proc = None
        self.terminated = False

    def start(self, timeout=60):
        """Start the worker and return it once it answers a ping."""
        return self.launch().wait_ready(timeout)

    def launch(self):
        """Start the worker process and return at once (wait_ready() waits for it): workers launched
        together boot together."""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=stop_when_parent_dies)
        self.terminated = False
        return self

    def wait_ready(self, timeout=60):
        """Return the worker once it answers a ping."""
        import kombu.exceptions
        import redis

        from mailer_project.celery import app

        deadline = time.monotonic() + timeout
        # A ping sent before the worker listens is lost, so ping often; a worker answers in milliseconds,
        # but give a loaded machine longer with each try. limit=1: return at the first pong rather than
        # wait out the timeout (a broadcast otherwise collects replies until it ends).
        wait = 0.2
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited early:\n{self.log_tail()}")
            try:
                if app.control.ping(destination=[self.name], timeout=wait, limit=1):
                    return self
            except (redis.ConnectionError, kombu.exceptions.OperationalError, OSError):
                reset_broker_pool()  # a stale pooled connection (e.g. Redis restarted): retry
            wait = min(wait + 0.1, 1.0)
        raise RuntimeError(f"worker {self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def pool_pids(self):
        """The pids of the worker's pool processes, which run the tasks."""
        from mailer_project.celery import app

        stats = app.control.inspect(destination=[self.name], timeout=5, limit=1).stats() or {}
        return stats[self.name]["pool"]["processes"]

    def process_ids(self):
        """The worker's main process, then its pool children (read from /proc: no broker round trip)."""
        pid = self.proc.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        return [pid, *map(int, children)]

    def rss_mb(self):
        """{pid: resident set size in MB} of the main process and each pool child."""
        sizes = {}
        for pid in self.process_ids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            if "VmRSS:" not in status:
                continue  # a pool process that has exited (Celery replaces it), not yet reaped
            sizes[pid] = int(status.split("VmRSS:")[1].split()[0]) / 1024
        return sizes

    def log_tail(self, lines=40):
        return log_tail(self.log_path, lines)

    def terminate(self):
        """Ask the worker to stop (SIGTERM: a warm shutdown) without waiting; stop() then waits."""
        if self.proc and self.proc.poll() is None and not self.terminated:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.terminated = True

    def stop(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self):
        """SIGKILL the worker and its pool children at once, as a crashed machine would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
