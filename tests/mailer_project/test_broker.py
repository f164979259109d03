"""mailer_project/broker.py: the broker transport of redis:// URLs."""

import pytest

from mailer_project import broker
from mailer_project.celery import app


def test_redis_urls_get_the_transport_whose_lost_channels_fail_as_connection_errors():
    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, broker.Transport)
        assert connection.as_uri().startswith("redis://"), "Flower and the worker banner read the scheme"
        errors = connection.connection_errors
        channel = connection.default_channel
        # What Celery does with a connection it lost: the transport is taken apart under its channels.
        connection.collect()
        # kombu's own channel raised AttributeError here (not a connection error), and the worker exited.
        with pytest.raises(errors, match="was lost and has been closed"):
            channel.qos.ack("a delivery tag of a task that was in hand")
