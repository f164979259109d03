"""Liveness and readiness facts that ops read.

- The scheduler's last heartbeat (recorded by a periodic task on the scheduler queue).
- Readiness: the database answers, every migration is applied, Redis (cache) and the Celery broker
  answer. Each check is bounded by a short timeout, so a probe never hangs on a dead dependency.
  The answer names each check with "ok" or "failed" only; why a check failed (host names, users,
  migration names) goes to the log, never to the caller.
"""

import logging
import socket
from dataclasses import asdict, dataclass

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from kombu import Connection

logger = logging.getLogger(__name__)

HEARTBEAT_KEY = "scheduler:heartbeat"
CHECK_TIMEOUT_SECONDS = 3


def record_scheduler_heartbeat():
    beat = {"at": timezone.now().isoformat(), "host": socket.gethostname()}
    cache.set(HEARTBEAT_KEY, beat, timeout=None)
    return beat


def last_scheduler_heartbeat():
    return cache.get(HEARTBEAT_KEY)


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


def check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "reachable"


# Set once every migration of this code is applied. Loading the migration graph is the costly part
# of a probe, and a process's code (hence its migrations) cannot change while it runs, so once they
# are all applied they stay applied; until then every probe checks again.
_all_migrations_applied = False


def check_migrations():
    global _all_migrations_applied
    if _all_migrations_applied:
        return "all applied"
    executor = MigrationExecutor(connection)
    unapplied = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if unapplied:
        names = ", ".join(f"{migration.app_label}.{migration.name}" for migration, _ in unapplied[:5])
        raise RuntimeError(f"{len(unapplied)} unapplied: {names}")
    _all_migrations_applied = True
    return "all applied"


def check_redis():
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
                                  socket_timeout=CHECK_TIMEOUT_SECONDS)
    try:
        client.ping()
    finally:
        client.close()
    return "reachable"


def check_broker():
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=CHECK_TIMEOUT_SECONDS,
                    transport_options={"socket_timeout": CHECK_TIMEOUT_SECONDS}) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=CHECK_TIMEOUT_SECONDS)
    return "reachable"


READINESS_CHECKS = {
    "database": check_database,
    "migrations": check_migrations,
    "redis": check_redis,
    "broker": check_broker,
}


def run_check(name, check):
    try:
        return Check(True, check())
    except Exception as error:  # a probe reports every failure instead of raising it
        logger.warning("Readiness check %s failed: %s", name, error)
        return Check(False, f"{type(error).__name__}: {error}"[:300])


def readiness():
    """(ready, {name: {"ok": bool, "detail": str}}) for every readiness check."""
    results = {}
    for name, check in READINESS_CHECKS.items():
        if name == "migrations" and not results["database"].ok:
            results[name] = Check(False, "not checked: the database is unreachable")
        else:
            results[name] = run_check(name, check)
    return all(r.ok for r in results.values()), {name: asdict(r) for name, r in results.items()}


def public_readiness():
    """(ready, {name: "ok" | "failed"}): what /readyz may tell anyone who asks."""
    ready, checks = readiness()
    return ready, {name: "ok" if check["ok"] else "failed" for name, check in checks.items()}
