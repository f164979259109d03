import pytest
import redis as redis_lib
from django.conf import settings

from tests.workers import CeleryWorker


@pytest.fixture
def redis_client():
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def clean_broker(redis_client):
    """An empty broker and cache, so no task left over from an earlier test is delivered."""
    redis_client.flushdb()
    yield redis_client


@pytest.fixture
def start_worker(transactional_db, clean_broker, tmp_path):
    """Start real Celery worker processes: start_worker(["scheduler", "senders"], concurrency=2)."""
    workers = []

    def start(queues=("scheduler", "senders"), **kwargs):
        worker = CeleryWorker(list(queues), tmp_path, **kwargs).start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
