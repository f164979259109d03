"""The shared sliding-window limit, checked on the limiter's own accounting (Redis time), never on
how fast the test ran."""

import json
import subprocess
import sys
import time
import uuid

import pytest
from django.conf import settings

from localservers.serving import REPO_ROOT
from campaigns.sending import ratelimit
from campaigns.sending.ratelimit import SlidingWindow

# One worker process: wait for the go signal, then acquire PARTS x SIZE tokens; print every grant.
WORKER = """
import json, sys, time
import redis
from campaigns.sending.ratelimit import SlidingWindow
url, key, rate, window, parts, size = sys.argv[1:7]
client = redis.Redis.from_url(url)
client.incr(key + ":ready")
while not client.exists(key + ":go"):
    time.sleep(0.005)
bucket = SlidingWindow(key, float(rate), float(window), client=client)
grants = []
for _ in range(int(parts)):
    grants += [[r.tokens, r.wait, r.ready_at] for r in bucket.acquire(int(size))]
print(json.dumps(grants))
"""


@pytest.fixture
def bucket_key(redis_client):
    key = f"ratelimit:test-{uuid.uuid4().hex}"
    yield key
    redis_client.delete(key, key + ":seq", key + ":ready", key + ":go")


def run_workers(redis_client, key, count, rate, window, parts, size):
    processes = [
        subprocess.Popen([sys.executable, "-c", WORKER, settings.REDIS_URL, key, str(rate), str(window),
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


def test_two_processes_sharing_a_limit_never_exceed_the_rate_in_any_window(redis_client, bucket_key):
    # Each process alone needs four windows (1,600 tokens at 400 a window), so a process that starts up
    # to three windows after the other still competes with it.
    rate, window, parts, size = 400, 0.25, 20, 80
    per_process = run_workers(redis_client, bucket_key, 2, rate, window, parts, size)

    assert [sum(tokens for tokens, _, _ in grants) for grants in per_process] == [parts * size] * 2
    # Both really competed: each one's grants start before the other's end.
    first, second = ([ready for _, _, ready in grants] for grants in per_process)
    assert min(first) < max(second) and min(second) < max(first)
    # Every process was made to wait by the other's use of the limit.
    assert all(sum(wait for _, wait, _ in grants) > 0 for grants in per_process)

    grants = sorted((ready, tokens) for grants in per_process for tokens, _, ready in grants)
    # In every window [t_i, t_i + window) of the limiter's clock, at most `rate` sends start (the
    # bound is exact: allow only the float error of epoch timestamps).
    for i, (start, _) in enumerate(grants):
        assert sum(tokens for at, tokens in grants[i:] if at < start + window - 1e-6) <= rate


def test_a_request_larger_than_the_limit_is_granted_in_parts(redis_client, bucket_key):
    waits = []
    limiter = SlidingWindow(bucket_key, rate=100, window=1.05, client=redis_client)

    reservations = limiter.acquire(180, sleep=waits.append)

    assert [r.tokens for r in reservations] == [100, 80]
    # The first part is a burst of one window's worth; the next waits until that window has passed.
    assert reservations[0].wait == 0
    assert reservations[1].ready_at - reservations[0].ready_at == pytest.approx(1.05, abs=1e-6)
    assert waits == [r.wait for r in reservations if r.wait > 0]


def test_a_second_caller_queues_behind_the_first(redis_client, bucket_key):
    first = SlidingWindow(bucket_key, rate=10, window=1.05, client=redis_client)
    second = SlidingWindow(bucket_key, rate=10, window=1.05, client=redis_client)

    full = first.reserve(10)
    queued = second.reserve(5)

    assert full.wait == 0
    assert queued.ready_at - full.ready_at == pytest.approx(1.05, abs=1e-6)


def test_a_pacer_lets_the_rate_start_then_waits_a_window_from_their_completion(settings, redis_client):
    settings.SMTP_RATE_LIMIT_PER_SEC = 10
    settings.RATE_LIMIT_GUARD_SECONDS = 0.05
    redis_client.delete("ratelimit:smtp:sends")
    pacer, other = ratelimit.Pacer("smtp"), ratelimit.Pacer("smtp")

    assert [pacer.try_start() for _ in range(9)] == [True] * 9  # each completes the one before
    assert other.try_start() is True  # the tenth place, taken by another connection (in flight)
    assert pacer.try_start() is False  # the rate has started within the window
    # The place frees a window after the oldest completion (Redis time), not before.
    assert 0.9 < pacer.hint <= 1.05
    other.done()
    redis_client.delete("ratelimit:smtp:sends")


def test_acquire_uses_the_providers_configured_rate(settings, redis_client):
    settings.SMTP_RATE_LIMIT_PER_SEC = 20
    redis_client.delete("ratelimit:smtp", "ratelimit:smtp:seq")
    waits = []

    reservations = ratelimit.acquire("smtp", 50, sleep=waits.append)

    assert [r.tokens for r in reservations] == [20, 20, 10]
    assert redis_client.exists("ratelimit:smtp")
    assert len(waits) == 2
    redis_client.delete("ratelimit:smtp", "ratelimit:smtp:seq")


def test_rate_zero_means_no_limit_and_no_redis_state(settings, redis_client):
    settings.SMTP_RATE_LIMIT_PER_SEC = 0
    redis_client.delete("ratelimit:smtp")

    assert ratelimit.acquire("smtp", 10_000) == []
    assert ratelimit.Pacer("smtp").try_start() is True
    assert not redis_client.exists("ratelimit:smtp")
