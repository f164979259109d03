"""The Celery broker transport for redis:// URLs: kombu's Redis transport, with channels that report a
connection they lost as a connection error rather than crash the worker.

Celery 5.7 with kombu 5.7: when a worker loses Redis, its cleanup takes the connection's transport apart
(`Connection.collect()`) while channels of it are still in use: the channel waiting for the next task, whose
close failed on the dead socket, and the messages of the tasks in hand (acknowledged late), whose ack comes
when the task ends. Each then asks the transport for a new Redis client, finds no connection details and
raises AttributeError ('NoneType' object has no attribute 'hostname'), which Celery only expects as a
connection error: the worker exits ("Unrecoverable error"). These channels raise redis's ConnectionError
instead, which Celery logs and passes over, as after any lost connection: the consumer reconnects; a message
that could not be acknowledged or put back stays in Redis's unacknowledged set if Redis kept its data (Redis
queues it again after the visibility timeout, and the task, safe to run twice, finds its work done) and is
lost with Redis's data otherwise (the sweep recovers the batch or the start it stood for).
"""

import redis
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous=False):
        # Every new client of the channel (its pools, its own client) starts here.
        if self.connection is None or self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection this channel belonged to was lost and "
                                                   "has been closed")
        return super()._connparams(asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel


def use_for_redis_urls():
    """Resolve the redis:// scheme to this transport (the alias, rather than Celery's broker_transport, keeps
    the URLs that Flower and the worker banner show as they were)."""
    TRANSPORT_ALIASES["redis"] = f"{__name__}:Transport"
