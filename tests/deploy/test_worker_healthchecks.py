"""The compose files' worker healthchecks (`celery inspect ping`), run natively against workers
started with the compose files' own commands."""

import os
import shlex
import socket
import subprocess
import time

import pytest

from tests.deploy import tools
from tests.support.workers import service_env


def shell_of(compose_value):
    # `docker-compose config` keeps $$ (a literal $ for the container's shell) in its output.
    return compose_value.replace("$$", "$")


def run_healthcheck(test, env):
    kind, *command = test
    argv = ["sh", "-c", shell_of(command[0])] if kind == "CMD-SHELL" else command
    return subprocess.run(argv, cwd=tools.ROOT, env=env, capture_output=True, text=True, timeout=60)


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
    try:
        deadline = time.monotonic() + 90
        while True:
            check = run_healthcheck(spec["healthcheck"]["test"], env)
            if check.returncode == 0:
                break
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, check.stdout + check.stderr
        assert "pong" in check.stdout
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(30)
        log.close()
    after = run_healthcheck(spec["healthcheck"]["test"], env)
    assert after.returncode != 0
