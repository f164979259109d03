"""/healthz and /readyz: alive, and ready only when database, migrations, Redis and broker all are."""

import json
import os
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings

from tests.deploy import tools
from tests.support.workers import test_database_url as database_url_for_tests

# /readyz in a fresh interpreter with the environment under test, through Django's test client.
PROBE = (
    "import json, django; django.setup(); from django.test import Client; "
    "r = Client().get('/readyz'); print(json.dumps({'status': r.status_code, 'body': r.json()}))"
)


def readyz_with(**env):
    full_env = {**os.environ, "DB_CONN_MAX_AGE": "0", **env}
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=tools.ROOT, env=full_env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "log": result.stderr}


def failed_checks(answer):
    assert set(answer["body"]["checks"].values()) <= {"ok", "failed"}
    return {name for name, state in answer["body"]["checks"].items() if state == "failed"}


@pytest.mark.django_db
def test_healthz_answers_without_touching_anything(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_readyz_reports_every_check_when_ready(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "migrations": "ok", "redis": "ok", "broker": "ok"}


def test_readyz_is_503_when_the_database_is_unreachable(django_db_setup):
    answer = readyz_with(DATABASE_URL=f"postgres://mailer@127.0.0.1:{tools.free_port()}/mailer")
    assert answer["status"] == 503
    assert answer["body"]["status"] == "not ready"
    assert failed_checks(answer) == {"database", "migrations"}
    assert "Readiness check database failed" in answer["log"]  # the reason is logged, not answered


def test_readyz_is_503_when_redis_and_the_broker_are_unreachable(django_db_setup):
    closed = f"redis://127.0.0.1:{tools.free_port()}/0"
    answer = readyz_with(DATABASE_URL=database_url_for_tests(), REDIS_URL=closed)
    assert answer["status"] == 503
    assert failed_checks(answer) == {"redis", "broker"}


def test_readyz_is_503_while_migrations_are_unapplied(django_db_setup, django_db_blocker):
    """A database that exists but was never migrated (e.g. web not finished starting)."""
    from django.db import connection

    url = urlsplit(database_url_for_tests())
    empty_db = "deploy_unmigrated"
    with django_db_blocker.unblock():
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {empty_db}")
            cursor.execute(f"CREATE DATABASE {empty_db}")
    try:
        answer = readyz_with(DATABASE_URL=urlunsplit(url._replace(path=f"/{empty_db}")))
    finally:
        with django_db_blocker.unblock():
            with connection.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {empty_db}")
    assert answer["status"] == 503
    assert failed_checks(answer) == {"migrations"}
    assert "unapplied" in answer["log"] and "unapplied" not in json.dumps(answer["body"])


def test_readyz_refuses_other_methods(client):
    assert client.post("/readyz").status_code == 405
    assert client.post("/healthz").status_code == 405


def test_health_paths_are_exempt_from_the_https_redirect(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    assert client.get("/admin/login/").status_code == 301
