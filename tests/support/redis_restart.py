"""Restart the test Redis in place (same port, empty), as a crashed and restarted Redis would be: for
tests/sending/test_pipeline.py and the chaos run (tests/chaos)."""

import subprocess
import time
from urllib.parse import urlparse

import redis as redis_lib


def can_restart(url):
    """Only the throwaway Redis that `make test` starts (on 127.0.0.1) may be restarted."""
    return url.startswith("redis://127.0.0.1:")


def restart_redis(url, timeout=20, down_seconds=0):
    """Shut the Redis at URL down without saving, start it again empty (DOWN_SECONDS later: an outage
    the workers notice while it lasts), and drop this process's pooled connections to the old server.
    The restarted server serves the rest of the session; devstack shuts down whatever Redis listens on
    its port when the run ends."""
    client = redis_lib.Redis.from_url(url)
    directory = client.config_get("dir")["dir"]
    try:
        client.shutdown(nosave=True)
    except redis_lib.ConnectionError:
        pass  # it closes the connection as it goes
    _wait(lambda: not _pings(client), timeout, "the old Redis did not go")
    time.sleep(down_seconds)
    # As many databases as devstack gives it: each process of a parallel run has its own.
    subprocess.Popen(["redis-server", "--port", str(urlparse(url).port), "--bind", "127.0.0.1", "--dir", directory,
                      "--save", "", "--appendonly", "no", "--databases", "32"], stdout=subprocess.DEVNULL,
                     start_new_session=True)
    _wait(lambda: _pings(client), timeout, f"Redis did not come back within {timeout} s")
    client.close()
    forget_redis_connections()


def forget_redis_connections():
    """Drop this process's pooled connections to the old server, so later tests start clean."""
    from django_redis import get_redis_connection

    from localservers.workers import reset_broker_pool

    reset_broker_pool()
    get_redis_connection("default").connection_pool.disconnect()


def _wait(predicate, timeout, failure):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(0.05)


def _pings(client):
    try:
        return client.ping()
    except redis_lib.ConnectionError:
        return False
