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

SendGrid reserves start times per request of up to a second's worth (`acquire`). SMTP paces each
connection one message at a time by when messages *completed* (`Pacer`), which bounds what arrives
at the relay in every window exactly, whatever the delays on the way.
"""

import functools
import logging
import time
import uuid
from dataclasses import dataclass

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

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


# KEYS[1]: the provider's sends, scored by when each completed (or, while in flight, by when it is
# assumed to have completed at the latest: its start + ARGV[3]). ARGV: limit, window seconds, hold
# seconds, the member that has just completed ('' for none), the member to start ('' for none).
# Returns {'1'} when the new send may start now, else {'0', seconds until a place is expected}.
PACE_SCRIPT = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local hold = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[1], 'XX', 'LT', string.format('%.17g', now), ARGV[4])
end
if ARGV[5] == '' then return {'1'} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.17g', now - window))
local n = redis.call('ZCARD', KEYS[1])
if n < limit then
  redis.call('ZADD', KEYS[1], string.format('%.17g', now + hold), ARGV[5])
  redis.call('PEXPIRE', KEYS[1], math.ceil((hold + window) * 1000) + 1000)
  return {'1'}
end
local edge = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
return {'0', string.format('%.17g', tonumber(edge[2]) + window - now)}
"""

# How long a send in flight is assumed to take at most (a killed worker's send holds its place this long).
PACE_HOLD_SECONDS = 30.0
# How often a waiting sender asks again (a send in flight may complete earlier than assumed).
PACE_POLL_SECONDS = 0.05


class Pacer:
    """Paces one connection's sends, one message at a time, so that at most the rate *arrive* at the
    provider in any window of one second, across every worker, whatever the network's delays.

    A send may start only when fewer than the rate sends completed within the window before it or
    are still in flight. A send counts as completed when its reply was read (this connection's next
    `try_start`, or `done`): no earlier than its arrival. So any two arrivals the rate apart are at
    least a window apart. Without a limit: no Redis call and no wait.
    """

    def __init__(self, provider):
        rate = rate_for(provider)
        self.limit = max(1, int(rate)) if rate > 0 else 0
        self.key = f"ratelimit:{provider}:sends"
        self.previous = ""
        self.hint = 0.0
        if self.limit:
            self.client = _client(settings.REDIS_URL)
            self._pace = self.client.register_script(PACE_SCRIPT)
            self.prefix = uuid.uuid4().hex
            self.seq = 0

    def _call(self, completed, start):
        reply = self._pace(keys=[self.key], args=[self.limit, window_seconds(), PACE_HOLD_SECONDS, completed, start])
        return reply[0] in (b"1", "1"), float(reply[1]) if len(reply) > 1 else 0.0

    def try_start(self):
        """Take a place for the next send now (the previous one is complete): True, or False when it
        must wait (then call `start`)."""
        if not self.limit:
            return True
        self.seq += 1
        member = f"{self.prefix}:{self.seq}"
        granted, self.hint = self._call(self.previous, member)
        self.previous = ""
        if granted:
            self.previous = member
        else:
            self.pending = member
        return granted

    def start(self):
        """Wait until the send `try_start` refused may start."""
        while True:
            wait(max(0.001, min(self.hint, PACE_POLL_SECONDS)))
            granted, self.hint = self._call("", self.pending)
            if granted:
                self.previous = self.pending
                return

    def done(self):
        """The last send's reply was read."""
        if self.limit and self.previous:
            self._call(self.previous, "")
            self.previous = ""
