"""The shared rate limit, checked on the limiter's own clock (Redis time), never on how fast the test
ran: at most the rate of messages arrive in any window, however the sends are delayed on their way."""

import bisect
import json
import os
import subprocess
import sys
import time

import pytest
from django.conf import settings

from django.utils import timezone

from campaigns.exceptions import RateWaitTooLong
from campaigns.sending import ratelimit
from localservers.serving import REPO_ROOT

KEY = "ratelimit:sendgrid:sends"

# One worker process: wait for the go signal, then make SENDS requests of SIZE messages each, every
# one held up at random before it "arrives" (Redis time, the provider's clock here) and again before
# its answer is read; print every arrival.
WORKER = """
import json, os, random, sys, time
import django
django.setup()
from campaigns.sending import ratelimit
sends, size = map(int, sys.argv[1:3])
client = ratelimit._client(os.environ["REDIS_URL"])
client.incr("pacer-test:ready")
while not client.exists("pacer-test:go"):
    time.sleep(0.005)
chance = random.Random(os.getpid())
arrivals = []
pacer = ratelimit.Pacer("sendgrid")
for _ in range(sends):
    pacer.take(size)
    time.sleep(chance.choice((0, 0.3)))  # on the way out: a slow database, a busy network
    seconds, micros = client.time()
    arrivals.append(seconds + micros / 1e6)
    time.sleep(chance.choice((0, 0.2)))  # the answer on its way back
    pacer.done()
print(json.dumps(arrivals))
"""


@pytest.fixture
def pacer_keys(redis_client):
    keys = [KEY, "ratelimit:smtp:sends", "pacer-test:ready", "pacer-test:go"]
    redis_client.delete(*keys)
    yield
    redis_client.delete(*keys)


def run_workers(redis_client, count, rate, sends, size):
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="mailer_project.settings", REDIS_URL=settings.REDIS_URL,
               SENDGRID_RATE_LIMIT_PER_SEC=str(rate), RATE_LIMIT_GUARD_SECONDS="0")
    processes = [subprocess.Popen([sys.executable, "-c", WORKER, str(sends), str(size)], cwd=REPO_ROOT, env=env,
                                  stdout=subprocess.PIPE, text=True)
                 for _ in range(count)]
    deadline = time.monotonic() + 30
    while int(redis_client.get("pacer-test:ready") or 0) < count:
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.01)
    redis_client.set("pacer-test:go", 1)
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    assert [process.returncode for process in processes] == [0] * count
    return [json.loads(output) for output in outputs]


def test_processes_sharing_a_limit_never_let_more_than_the_rate_arrive_in_any_window(redis_client, pacer_keys):
    # Three processes, requests of 80 under 400/s: five requests' worth in flight or completed within
    # any window, and each process alone needs several windows, so they compete throughout.
    rate, sends, size = 400, 8, 80
    per_process = run_workers(redis_client, 3, rate, sends, size)

    assert [len(arrivals) for arrivals in per_process] == [sends] * 3
    first, second, third = (sorted(arrivals) for arrivals in per_process)
    assert first[0] < second[-1] and second[0] < first[-1] and third[0] < first[-1]  # they overlapped
    # In every window [t, t + 1 s) of the provider's clock, at most `rate` messages arrive.
    arrivals = sorted(t for process in per_process for t in process)
    busiest = max(bisect.bisect_left(arrivals, start + 1.0) - i for i, start in enumerate(arrivals)) * size
    assert busiest <= rate


def test_a_request_waits_until_its_places_free_a_window_after_the_answers(settings, pacer_keys):
    settings.SENDGRID_RATE_LIMIT_PER_SEC = 10
    settings.RATE_LIMIT_GUARD_SECONDS = 0.05
    first, second = ratelimit.Pacer("sendgrid"), ratelimit.Pacer("sendgrid")

    assert first.try_start(8) is True  # a burst of up to one second's worth starts at once
    assert second.try_start(5) is False  # 8 in flight: 5 more would exceed the rate
    assert second.try_start(2) is True  # 2 fit
    second.done()
    first.done()
    # Now all 10 places completed just now: a request of 5 waits for the fifth oldest to be a window
    # old (Redis time), not before.
    assert second.try_start(5) is False
    assert 0.9 < second.hint <= 1.05


def test_a_waiting_request_sleeps_until_its_places_free_instead_of_polling(settings, pacer_keys, monkeypatch):
    settings.SENDGRID_RATE_LIMIT_PER_SEC = 10
    first, second = ratelimit.Pacer("sendgrid"), ratelimit.Pacer("sendgrid")
    first.take(10)
    first.done()  # every place answered: when each frees is known
    waits = []
    monkeypatch.setattr(ratelimit, "wait", lambda seconds: (waits.append(seconds), time.sleep(seconds)))

    second.take(5)

    # One wait for the whole window (and at most one more if the sleep ended a hair early).
    assert waits[0] > 0.9 and len(waits) <= 2
    second.done()


def test_a_request_larger_than_the_limit_takes_every_place(settings, pacer_keys, redis_client):
    settings.SENDGRID_RATE_LIMIT_PER_SEC = 10
    pacer, other = ratelimit.Pacer("sendgrid"), ratelimit.Pacer("sendgrid")

    assert pacer.try_start(25) is True
    assert redis_client.zcard(KEY) == 10
    assert other.try_start(1) is False


def test_a_pacer_lets_the_rate_start_then_waits_a_window_from_their_completion(settings, pacer_keys):
    settings.SMTP_RATE_LIMIT_PER_SEC = 10
    settings.RATE_LIMIT_GUARD_SECONDS = 0.05
    pacer, other = ratelimit.Pacer("smtp"), ratelimit.Pacer("smtp")

    assert [pacer.try_start() for _ in range(9)] == [True] * 9  # each completes the one before
    assert other.try_start() is True  # the tenth place, taken by another connection (in flight)
    assert pacer.try_start() is False  # the rate has started within the window
    # The place frees a window after the oldest completion (Redis time), not before.
    assert 0.9 < pacer.hint <= 1.05
    other.done()


def test_a_rate_below_one_a_second_is_one_send_per_its_interval(settings, pacer_keys):
    settings.RATE_LIMIT_GUARD_SECONDS = 0.05
    pacer = ratelimit.Pacer("smtp", rate=0.5)  # 30 a minute: one send every 2 s, not one a second

    assert pacer.try_start() is True
    pacer.done()
    assert pacer.try_start() is False
    assert 1.9 < pacer.hint <= 2.05


def test_a_batch_waits_for_its_rate_only_as_long_as_its_budget_then_gives_the_wait_up(
        settings, pacer_keys, monkeypatch):
    waits = []
    monkeypatch.setattr(ratelimit, "wait", waits.append)  # Redis time does not move: the same wait again
    budget = ratelimit.RateWaitBudget(2.5)
    first, second = ratelimit.Pacer("smtp", rate=1, budget=budget), ratelimit.Pacer("smtp", rate=1, budget=budget)
    first.take()
    first.done()

    with pytest.raises(RateWaitTooLong) as raised:
        second.take()

    assert len(waits) == 2 and sum(waits) <= 2.5 and budget.left < 1.05  # the pacers' waits share it
    assert raised.value.until > timezone.now()
    assert ratelimit.Pacer("smtp", rate=1).try_start() is False  # only the first send holds a place


def test_a_redis_error_when_a_send_completes_is_logged_not_raised(settings, pacer_keys, caplog):
    settings.SENDGRID_RATE_LIMIT_PER_SEC = 10
    pacer = ratelimit.Pacer("sendgrid")
    pacer.take(3)

    def unreachable(**kwargs):
        raise ratelimit.redis.ConnectionError("Redis went away")
    pacer._pace = unreachable

    pacer.done()  # the answer that came back must still be recorded by the caller

    assert "places stay held" in caplog.text


def test_rate_zero_means_no_limit_and_no_redis_state(settings, redis_client, pacer_keys):
    settings.SMTP_RATE_LIMIT_PER_SEC = 0
    settings.SENDGRID_RATE_LIMIT_PER_SEC = 0

    assert ratelimit.Pacer("smtp").try_start() is True
    ratelimit.Pacer("sendgrid").take(10_000)
    assert not redis_client.exists("ratelimit:smtp:sends", KEY)


# --- a sending account's limits per minute, hour and day (ratelimit.Quota) ---------------------------------

@pytest.fixture
def quota_keys(redis_client):
    redis_client.delete(*(f"quota:account-test:{w}" for w in ratelimit.QUOTA_WINDOWS))
    yield
    redis_client.delete(*(f"quota:account-test:{w}" for w in ratelimit.QUOTA_WINDOWS))


def test_a_quota_grants_up_to_the_room_of_its_tightest_window_and_says_when_it_frees(quota_keys):
    quota = ratelimit.Quota("account-test", per_hour=50, per_day=30)

    first = quota.reserve(20)
    second = quota.reserve(20)
    third = quota.reserve(5)

    assert (first.granted, second.granted, third.granted) == (20, 10, 0)
    assert third.room == 0 and third.used == {"minute": 30, "hour": 30, "day": 30}
    # A rolling day: the first reservation leaves it a day after it was taken.
    assert third.free_at == pytest.approx(time.time() + settings.SENDING_ACCOUNT_DAY_SECONDS, abs=5)


def test_what_a_reservation_did_not_use_is_given_back(quota_keys):
    quota = ratelimit.Quota("account-test", per_day=30)
    answer = quota.reserve(30)

    quota.settle(answer, 12)

    assert quota.look().room == 18 and quota.reserve(25).granted == 18


def test_a_quota_without_limits_grants_everything_and_still_counts(quota_keys):
    quota = ratelimit.Quota("account-test")
    assert quota.reserve(500).granted == 500
    look = quota.look()
    assert look.room is None and look.used["hour"] == 500


def test_a_rolling_day_lets_places_go_once_the_window_has_passed(settings, quota_keys):
    settings.SENDING_ACCOUNT_DAY_SECONDS = 1
    quota = ratelimit.Quota("account-test", per_day=10)
    assert quota.reserve(10).granted == 10 and quota.reserve(1).granted == 0
    time.sleep(1.1)
    assert quota.reserve(10).granted == 10


def test_a_calendar_day_frees_at_midnight_in_time_zone(settings, quota_keys):
    settings.TIME_ZONE = "Asia/Tokyo"
    quota = ratelimit.Quota("account-test", per_day=5, calendar_day=True)
    quota.reserve(5)

    start, end = ratelimit.calendar_day_bounds()
    answer = quota.reserve(1)

    assert answer.granted == 0 and answer.free_at == pytest.approx(end)
    assert end - start in (23 * 3600, 24 * 3600, 25 * 3600)
    from datetime import datetime
    from zoneinfo import ZoneInfo
    assert datetime.fromtimestamp(end, ZoneInfo("Asia/Tokyo")).strftime("%H:%M") == "00:00"
