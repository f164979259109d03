"""Real Celery worker processes for tests (localservers.workers.CeleryWorker), against the test database
and the test Redis: the environment they need."""

import os
from pathlib import Path
from urllib.parse import quote

from django.db import connection

from localservers.workers import ALONE, CeleryWorker

ROOT = Path(__file__).resolve().parents[2]


def worker_for_tests(queues, log_dir, concurrency=2, app_module="mailer_project", module="celery", **env):
    """A CeleryWorker (not started) against the test database, with ENV added to its environment."""
    return CeleryWorker(list(queues), log_dir, concurrency=concurrency, host="test", options=ALONE,
                        app_module=app_module, module=module, env=service_env(**env))


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
