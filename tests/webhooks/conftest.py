import pytest

from campaigns.webhooks import events
from tests.support.webhook_receiver import start_receiver


@pytest.fixture
def receiver():
    found = start_receiver()
    yield found
    found.server.shutdown()
    found.server.server_close()


@pytest.fixture
def private_urls_allowed(settings, worker_env):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    worker_env["WEBHOOK_ALLOW_PRIVATE_URLS"] = "1"


@pytest.fixture(autouse=True)
def fresh_subscriptions():
    events.forget_subscriptions()
    yield
    events.forget_subscriptions()


def endpoint_for(receiver, event_types, user=None):
    from campaigns.webhooks import endpoints

    endpoint, secret = endpoints.create(user, receiver.url, event_types)
    receiver.secret = secret
    return endpoint
