"""The shared token bucket, checked on the limiter's own accounting (Redis time), never on how fast
the test ran."""

import json
import subprocess
import sys
import time
import uuid

import pytest
from django.conf import settings

from campaigns.localservers import REPO_ROOT
from campaigns.sending import ratelimit
from campaigns.sending.ratelimit import TokenBucket

# One worker process: wait for the go signal, then acquire PARTS x SIZE tokens; print every grant.
WORKER = """
import json, sys, time
import redis
from campaigns.sending.ratelimit import TokenBucket
url, key, rate, capacity, parts, size = sys.argv[1:7]
client = redis.Redis.from_url(url)
client.incr(key + ":ready")
while not client.exists(key + ":go"):
    time.sleep(0.005)
bucket = TokenBucket(key, float(rate), int(capacity), client=client)
grants = []
for _ in range(int(parts)):
    grants += [[r.tokens, r.wait, r.ready_at] for r in bucket.acquire(int(size))]
print(json.dumps(grants))
"""


@pytest.fixture
def bucket_key(redis_client):
    key = f"ratelimit:test-{uuid.uuid4().hex}"
    yield key
    redis_client.delete(key, key + ":ready", key + ":go")


def run_workers(redis_client, key, count, rate, capacity, parts, size):
    processes = [
        subprocess.Popen([sys.executable, "-c", WORKER, settings.REDIS_URL, key, str(rate), str(capacity),
                          str(parts), str(size)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    deadline = time.monotonic() + 30
    while int(redis_client.get(key + ":ready") or 0) < count:
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.01)
    redis_client.set(key + ":go", 1)
    outputs = [process.communicate(timeout=60)[0] for process in processes]
    assert [process.returncode for process in processes] == [0] * count
    return [json.loads(output) for output in outputs]


def test_two_processes_sharing_a_bucket_never_exceed_the_rate_together(redis_client, bucket_key):
    rate, capacity, parts, size = 400, 100, 6, 80
    per_process = run_workers(redis_client, bucket_key, 2, rate, capacity, parts, size)

    assert [sum(tokens for tokens, _, _ in grants) for grants in per_process] == [parts * size] * 2
    # Both really competed: each one's grants start before the other's end.
    first, second = ([ready for _, _, ready in grants] for grants in per_process)
    assert min(first) < max(second) and min(second) < max(first)
    # Every process was made to wait by the other's use of the bucket.
    assert all(sum(wait for _, wait, _ in grants) > 0 for grants in per_process)

    grants = sorted((ready, tokens) for grants in per_process for tokens, _, ready in grants)
    total = sum(tokens for _, tokens in grants)
    # In any window [t_i, t_j], the tokens granted never exceed one bucketful plus the rate times its length
    # (the bound is exact, so allow only the float error of epoch timestamps: a thousandth of a token).
    for i in range(len(grants)):
        granted = 0
        for j in range(i, len(grants)):
            granted += grants[j][1]
            assert granted <= capacity + rate * (grants[j][0] - grants[i][0]) + 1e-3
    # Hence granting N tokens took at least (N - capacity) / rate seconds of the limiter's time.
    assert grants[-1][0] - grants[0][0] >= (total - capacity) / rate - 1e-5


def test_a_request_larger_than_the_bucket_is_granted_in_parts(redis_client, bucket_key):
    waits = []
    bucket = TokenBucket(bucket_key, rate=100, capacity=50, client=redis_client)

    reservations = bucket.acquire(180, sleep=waits.append)

    assert [r.tokens for r in reservations] == [50, 50, 50, 30]
    # The first part empties the full bucket; each further part waits for its own tokens to refill.
    assert reservations[0].wait == 0
    for previous, current in zip(reservations, reservations[1:]):
        assert current.ready_at - previous.ready_at == pytest.approx(current.tokens / 100, abs=1e-6)
    assert waits == [r.wait for r in reservations if r.wait > 0]


def test_a_second_caller_queues_behind_the_first(redis_client, bucket_key):
    first = TokenBucket(bucket_key, rate=10, capacity=10, client=redis_client)
    second = TokenBucket(bucket_key, rate=10, capacity=10, client=redis_client)

    full = first.reserve(10)
    queued = second.reserve(5)

    assert full.wait == 0
    assert queued.ready_at - full.ready_at == pytest.approx(0.5, abs=1e-6)


def test_acquire_uses_the_providers_configured_rate(settings, redis_client):
    settings.SMTP_RATE_LIMIT_PER_SEC = 20
    redis_client.delete("ratelimit:smtp")
    waits = []

    reservations = ratelimit.acquire("smtp", 50, sleep=waits.append)

    assert [r.tokens for r in reservations] == [20, 20, 10]
    assert redis_client.exists("ratelimit:smtp")
    assert len(waits) == 2
    redis_client.delete("ratelimit:smtp")


def test_rate_zero_means_no_limit_and_no_redis_state(settings, redis_client):
    settings.SMTP_RATE_LIMIT_PER_SEC = 0
    redis_client.delete("ratelimit:smtp")

    assert ratelimit.acquire("smtp", 10_000) == []
    assert not redis_client.exists("ratelimit:smtp")
