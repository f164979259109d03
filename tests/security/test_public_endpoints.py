"""Issue 13, item 4 (Django side): /readyz tells nothing but check names, the migrations check is
cached, and click redirects do not load or parse the campaign's HTML on every hit."""

import logging

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns import health, signed_links
from campaigns.models import Campaign, DeliveryLog
from tests.deploy import tools
from tests.factories import CampaignFactory, DeliveryLogFactory

HTML = '<html><body><a href="https://shop.acme.test/sale">Sale</a></body></html>'


def path_of(url):
    return "/" + url.split("/", 3)[3]


@pytest.mark.django_db
def test_readyz_names_failed_checks_and_logs_the_reasons_without_answering_them(client, settings, caplog):
    closed = f"redis://:leaky-redis-password@127.0.0.1:{tools.free_port()}/0"
    settings.REDIS_URL = settings.CELERY_BROKER_URL = closed
    with caplog.at_level(logging.WARNING, logger="campaigns.health"):
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


@pytest.mark.django_db
def test_a_click_redirect_loads_the_campaign_html_once_per_campaign_version(client):
    delivery = DeliveryLogFactory(recipient__campaign=CampaignFactory(html_body=HTML),
                                  status=DeliveryLog.Status.SENT)
    click = path_of(signed_links.click_url(delivery.pk, 0))
    assert client.get(click)["Location"] == "https://shop.acme.test/sale"  # first hit: loads the HTML
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert client.get(click)["Location"] == "https://shop.acme.test/sale"
    assert not [q for q in queries.captured_queries if "html_body" in q["sql"]]

    # A new version of the campaign is read again: the redirect follows the campaign's current HTML.
    campaign = Campaign.objects.get(pk=delivery.campaign_id)
    campaign.html_body = HTML.replace("/sale", "/new-sale")
    campaign.save()
    assert client.get(click)["Location"] == "https://shop.acme.test/new-sale"
