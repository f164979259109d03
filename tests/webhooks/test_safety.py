"""Issue 23, item 3: webhook URLs on private, loopback or link-local addresses are refused unless
WEBHOOK_ALLOW_PRIVATE_URLS is set, checked after DNS resolution, when registered and again when sent."""

import pytest
from django.core.exceptions import ValidationError

from campaigns import services
from campaigns.models import WebhookAttempt, WebhookEndpoint
from campaigns.webhooks import dispatch, endpoints, safety
from tests.api.conftest import client_for
from tests.support.factories import CampaignFactory
from tests.webhooks.conftest import endpoint_for


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/hook", "http://localhost/hook", "http://10.1.2.3/",
                                 "http://169.254.169.254/latest/meta-data/", "http://[::1]/", "http://192.168.0.1/",
                                 "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/"])
def test_private_addresses_are_refused_without_the_setting(url, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    with pytest.raises(safety.UnsafeUrl):
        safety.check_url(url)


@pytest.mark.parametrize("url", ["ftp://example.com/", "http:///nohost", "https://user:pw@example.com/"])
def test_only_plain_http_and_https_urls_are_taken(url, settings):
    with pytest.raises(safety.UnsafeUrl):
        safety.check_url(url)


def test_registering_a_private_url_is_refused_with_the_reason(db, settings, receiver):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    with pytest.raises(ValidationError) as refused:
        endpoints.create(None, receiver.url, ["campaign.paused"])
    assert "WEBHOOK_ALLOW_PRIVATE_URLS" in str(refused.value)
    response = client_for("superuser").post("/api/v1/webhook-endpoints/", {"url": receiver.url,
                                                                           "events": ["campaign.paused"]})
    assert response.status_code == 400 and "private" in response.json()["errors"]["url"][0]
    assert not WebhookEndpoint.objects.exists()


def test_a_url_that_became_private_is_not_called(db, settings, receiver, private_urls_allowed):
    endpoint_for(receiver, ["campaign.paused"])
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False  # e.g. its name now resolves to a private address
    services.pause(CampaignFactory(status="in_progress").pk)
    assert dispatch.deliver_due() == (0, 1)
    assert receiver.requests == []
    assert "private" in WebhookAttempt.objects.get().error


def test_the_api_shows_the_secret_once(db, private_urls_allowed, receiver):
    client = client_for("superuser")
    made = client.post("/api/v1/webhook-endpoints/", {"url": receiver.url, "events": ["delivery.bounced"]})
    assert made.status_code == 201 and made.json()["secret"].startswith("whsec_")
    again = client.get(f"/api/v1/webhook-endpoints/{made.json()['id']}/").json()
    assert "secret" not in again
    assert client.post("/api/v1/webhook-endpoints/", {"url": receiver.url, "events": ["nope"]}).status_code == 400
