"""Issue 13, item 4 (Django side): /readyz tells nothing but check names, and the migrations check is
cached."""

import logging

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.operations import health
from tests.deploy import tools


@pytest.mark.django_db
def test_readyz_names_failed_checks_and_logs_the_reasons_without_answering_them(client, settings, caplog):
    closed = f"redis://:leaky-redis-password@127.0.0.1:{tools.free_port()}/0"
    settings.REDIS_URL = settings.CELERY_BROKER_URL = closed
    with caplog.at_level(logging.WARNING, logger="campaigns.operations.health"):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "checks": {"database": "ok", "migrations": "ok",
                                                                 "redis": "failed", "broker": "failed"}}
    assert "Readiness check redis failed" in caplog.text
    for secret in ("leaky-redis-password", closed.rsplit(":", 1)[1], "Error", "127.0.0.1"):
        assert secret not in response.content.decode()


@pytest.mark.django_db
def test_the_migrations_check_loads_the_migration_graph_only_until_all_are_applied(client, monkeypatch):
    monkeypatch.setattr(health, "_all_migrations_applied", False)
    built = []
    real_executor = health.MigrationExecutor
    monkeypatch.setattr(health, "MigrationExecutor", lambda conn: built.append(1) or real_executor(conn))
    for _ in range(3):
        assert client.get("/readyz").status_code == 200
    assert built == [1]
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/readyz").status_code == 200
    assert [q["sql"] for q in queries.captured_queries] == ["SELECT 1"]  # the database check only
