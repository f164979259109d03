"""What each pytest-xdist process of a parallel run needs of its own, set before Django reads its settings.

Loaded by pytest.ini (`-p tests.support.parallel`) at pytest's start, so this module's top level runs
before pytest-django imports mailer_project.settings. In an xdist process (PYTEST_XDIST_WORKER=gwN):

- REDIS_URL (and CELERY_BROKER_URL / CELERY_RESULT_BACKEND when set) points at Redis database N + 1:
  the Celery broker and results, the cache and the rate-limit and quota keys of each process are apart,
  and `clean_broker`'s FLUSHDB empties only its own. Celery workers started by tests inherit the
  environment (tests/support/workers.py), so they use the same database. (Celery's control messages go
  through Redis pub/sub, whose channel names kombu prefixes with the database number.)
- FREE_PORT_RANGE makes localservers.ports.free_port pick ports below the kernel's ephemeral range (no
  outgoing connection takes one between its picking and a server binding it), each reserved with a lock
  file for as long as this process runs (no other process, of this run or another, hands it out).

pytest-django already gives each process its own test database (test_<name>_gwN). Outside xdist (a
serial run, `python manage.py test`) this module does nothing.
"""

import os
from urllib.parse import urlsplit, urlunsplit

PORT_RANGE = "20000-32767"  # below Linux's ip_local_port_range (32768-60999)
REDIS_DATABASES = 16  # redis-server's default `databases`


def worker_number():
    """N of this xdist process (gwN), or None outside xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) if worker.startswith("gw") else None


def with_database(url, number):
    """URL (redis:// or rediss://) with its database number set to NUMBER."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise RuntimeError(f"a parallel run needs a redis:// REDIS_URL to give each process a database: {url!r}")
    return urlunsplit(parts._replace(path=f"/{number}"))


def isolate_this_process():
    number = worker_number()
    if number is None:
        return
    database = number + 1  # database 0 stays the serial run's
    if database >= REDIS_DATABASES:
        raise RuntimeError(f"xdist process gw{number} would need Redis database {database}: run fewer processes")
    os.environ["REDIS_URL"] = with_database(os.environ.get("REDIS_URL", "redis://127.0.0.1:6380/0"), database)
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        if os.environ.get(name):
            os.environ[name] = with_database(os.environ[name], database)
    os.environ.setdefault("FREE_PORT_RANGE", PORT_RANGE)


isolate_this_process()


def pytest_collection_modifyitems(config, items):
    """In a parallel run, the tests marked `slow` go first (in their own order, the same in every process,
    as xdist requires): the long ones start early and the short ones fill the gaps at the end, instead of
    one long test starting last and running alone."""
    if worker_number() is not None:
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)
