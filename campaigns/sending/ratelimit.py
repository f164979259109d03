"""Per-provider rate limits shared by every worker process, held in Redis.

The limit is a sliding window: in every window of one second (plus a small guard, below) no more
sends start than the provider's rate. Each send's start time is one member of a sorted set
(``ratelimit:<provider>``), and a Lua script reserves start times for a group of sends at once, so
concurrent workers cannot both take the same place. A send that may not start yet is given a start
time in the future, queueing callers in the order they asked (no polling, no starvation). Bursts are
at most one second's worth. Time comes from Redis (TIME), so workers' clocks do not matter.

The guard (``RATE_LIMIT_GUARD_SECONDS``, default 0.05 s) widens the window a little, so that the
time between a send's reservation and its arrival at the provider, which varies, does not let a
relay that counts by its own clock see more than the rate in one of its seconds.

SMTP reserves one start time per message, just before it goes (`Pacer`), so a message never leaves
long after its reserved time; SendGrid one per request of up to a second's worth (`acquire`).
"""

import functools
import logging
import time
from dataclasses import dataclass

import redis
from django.conf import settings

logger = logging.getLogger("campaigns.sending")

RATE_SETTINGS = {
    "sendgrid": "SENDGRID_RATE_LIMIT_PER_SEC",
    "smtp": "SMTP_RATE_LIMIT_PER_SEC",
}

# KEYS[1]: the window's sorted set, KEYS[2]: its member counter.
# ARGV: limit (sends per window), window seconds, group size (<= limit), groups.
# Returns {now, offset of group 1, offset of group 2, ...} as strings (seconds; Lua numbers would be
# truncated to integers on the way out).
RESERVE_SCRIPT = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local size = tonumber(ARGV[3])
local groups = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.17g', now - window))
local seq = redis.call('INCRBY', KEYS[2], size * groups)
local out = {string.format('%.17g', now)}
local at = now
for g = 1, groups do
  at = now
  -- The group may start once the send `limit - size` places before the newest is a window old.
  local edge = redis.call('ZREVRANGE', KEYS[1], limit - size, limit - size, 'WITHSCORES')
  if edge[2] then at = math.max(at, tonumber(edge[2]) + window) end
  local members = {}
  local score = string.format('%.17g', at)
  for i = 1, size do
    members[#members + 1] = score
    members[#members + 1] = seq
    seq = seq - 1
  end
  redis.call('ZADD', KEYS[1], unpack(members))
  out[#out + 1] = string.format('%.17g', at - now)
end
local ttl = math.ceil((at - now + window) * 1000) + 1000
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return out
"""


@dataclass(frozen=True)
class Reservation:
    tokens: int
    wait: float  # seconds the caller had to wait before using the tokens
    ready_at: float  # Redis time (epoch seconds) from which the tokens may be used


@functools.lru_cache(maxsize=4)
def _client(url):
    return redis.Redis.from_url(url)


def window_seconds():
    return 1.0 + max(0.0, settings.RATE_LIMIT_GUARD_SECONDS)


class SlidingWindow:
    """At most RATE sends start in any window of WINDOW seconds (one second plus the guard)."""

    def __init__(self, key, rate, window=None, client=None):
        if rate <= 0:
            raise ValueError("rate must be positive (0 means no limit: do not build a limiter)")
        self.key = key
        self.limit = max(1, int(rate))
        self.window = window_seconds() if window is None else float(window)
        self.client = client or _client(settings.REDIS_URL)
        self._reserve = self.client.register_script(RESERVE_SCRIPT)

    @property
    def capacity(self):
        return self.limit

    def reserve_groups(self, size, groups=1):
        """Start times for GROUPS groups of SIZE sends each: [Reservation], in order."""
        if not 0 < size <= self.limit:
            raise ValueError(f"reserve between 1 and {self.limit} sends at once, not {size}")
        now, *offsets = self._reserve(keys=[self.key, self.key + ":seq"],
                                      args=[self.limit, self.window, size, groups])
        now = float(now)
        return [Reservation(size, float(offset), now + float(offset)) for offset in offsets]

    def reserve(self, tokens):
        return self.reserve_groups(tokens)[0]

    def acquire(self, tokens, sleep=None):
        """Block until TOKENS sends may start; more than one window's worth is granted in parts."""
        sleep = sleep or wait
        reservations = []
        while tokens > 0:
            reservation = self.reserve(min(tokens, self.limit))
            if reservation.wait > 0:
                sleep(reservation.wait)
            reservations.append(reservation)
            tokens -= reservation.tokens
        return reservations


def rate_for(provider):
    return float(getattr(settings, RATE_SETTINGS.get(provider, ""), 0) or 0)


def limiter_for(provider):
    rate = rate_for(provider)
    return SlidingWindow(f"ratelimit:{provider}", rate) if rate > 0 else None


def acquire(provider, tokens, sleep=None):
    """Wait for `tokens` sends on `provider` under its configured rate (0 = no limit, no Redis call)."""
    limiter = limiter_for(provider)
    if limiter is None or tokens <= 0:
        return []
    reservations = limiter.acquire(tokens, sleep=sleep)
    waited = sum(r.wait for r in reservations)
    if waited >= 1:
        logger.info("%s rate limit (%g/s): waited %.1f s for %d sends", provider, limiter.limit, waited, tokens)
    return reservations


def wait(seconds):
    """Sleep for a rate-limit wait (one place, so that tests can stop a worker in one)."""
    time.sleep(seconds)


class Pacer:
    """Paces sends one at a time: `reserve` takes the next send's start time (time.monotonic) from
    the shared limit, `wait_until` sleeps until it. Without a limit, no Redis call and no wait."""

    def __init__(self, provider):
        self.limiter = limiter_for(provider)

    def reserve(self):
        if self.limiter is None:
            return float("-inf")
        return time.monotonic() + self.limiter.reserve(1).wait

    @staticmethod
    def delay(due):
        return due - time.monotonic()

    def wait_until(self, due):
        delay = self.delay(due)
        if delay > 0:
            wait(delay)
