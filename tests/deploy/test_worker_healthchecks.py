"""The compose files' worker healthchecks (`docker/healthcheck.py worker`, a Celery ping), run natively
against workers started with the compose files' own commands."""

import os
import shlex
import socket
import subprocess
import time

import pytest

from mailer_project.celery import app
from tests.deploy import tools
from tests.support.workers import service_env


def shell_of(compose_value):
    # `docker-compose config` keeps $$ (a literal $ for the container's shell) in its output.
    return compose_value.replace("$$", "$")


def run_healthcheck(test, env, timeout=None):
    """Run a compose healthcheck; TIMEOUT replaces the probe's own wait for a pong (the probe's last argument)."""
    kind, *command = test
    argv = ["sh", "-c", shell_of(command[0])] if kind == "CMD-SHELL" else command
    if timeout is not None:
        argv[-1] += f" {timeout}"
    return subprocess.run(argv, cwd=tools.ROOT, env=env, capture_output=True, text=True, timeout=60)


def worker_name(test, env):
    """The node name the probe pings (after the shell expands $HOSTNAME)."""
    return subprocess.run(["sh", "-c", "echo " + shell_of(test[1]).split()[-1]], env=env, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.slow
@pytest.mark.parametrize("service", ["celery_worker_scheduler", "celery_worker_imports", "celery_worker_bounces",
                                     "celery_worker_sender"])
def test_worker_healthcheck_passes_while_the_worker_runs_and_fails_once_it_stops(service, dev_compose,
                                                                                  transactional_db, clean_broker,
                                                                                  tmp_path):
    spec = dev_compose["services"][service]
    # In a container %h and $HOSTNAME are both the container's host name; here, this machine's.
    env = tools.path_with_venv(service_env(HOSTNAME=socket.gethostname()))
    log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen(["sh", "docker/entrypoint.sh", *shlex.split(spec["command"])], cwd=tools.ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    test = spec["healthcheck"]["test"]
    try:
        # Wait for the worker with short pings (a ping sent before it listens is lost, and the probe would
        # then wait out its whole timeout), then run the probe once, as Docker would.
        deadline = time.monotonic() + 90
        while not app.control.ping(destination=[worker_name(test, env)], timeout=0.5, limit=1):
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
        check = run_healthcheck(test, env)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "pong" in check.stdout
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(30)
        log.close()
    # The same probe with a 2 s wait instead of 10: silence is silence.
    after = run_healthcheck(test, env, timeout=2)
    assert after.returncode != 0
    assert "did not answer" in after.stderr
