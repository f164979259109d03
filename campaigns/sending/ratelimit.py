"""Per-provider rate limits shared by every worker process, held in Redis.

The limit holds in every window of one second (plus a small guard, below) *as the provider sees it*:
no more than the provider's rate of messages arrive there in any such window, across every worker,
whatever the delays on the way. A send takes one place per message (a SendGrid request of 200
recipients takes 200 places), and a place frees one window after its send *completed*: its reply
was read, which is never before the send arrived. A send may start only when its places are free,
so any two arrivals the rate apart are at least a window apart (`Pacer`). Bursts are at most one
second's worth. Time comes from Redis (TIME), so workers' clocks do not matter.

SMTP paces each connection one message at a time; SendGrid paces each request.

The guard (``RATE_LIMIT_GUARD_SECONDS``, default 0.05 s) widens the window a little, for the
difference between Redis's clock and the provider's.
"""

import functools
import logging
import time
import uuid

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

RATE_SETTINGS = {
    "sendgrid": "SENDGRID_RATE_LIMIT_PER_SEC",
    "smtp": "SMTP_RATE_LIMIT_PER_SEC",
}


@functools.lru_cache(maxsize=4)
def _client(url):
    return redis.Redis.from_url(url)


def window_seconds():
    return 1.0 + max(0.0, settings.RATE_LIMIT_GUARD_SECONDS)


def rate_for(provider):
    return float(getattr(settings, RATE_SETTINGS.get(provider, ""), 0) or 0)


def wait(seconds):
    """Sleep for a rate-limit wait (one place, so that tests can stop a worker in one)."""
    time.sleep(seconds)


# KEYS[1]: the provider's places, one per message, each scored by when its send completed (or, while
# in flight, by when it is assumed to have completed at the latest: its start + hold). A send of N
# messages holds the members '<send>#1' .. '<send>#N'.
# ARGV: limit, window seconds, hold seconds, the send that has just completed ('' for none) and its
# size, the send to start ('' for none) and its size (<= limit).
# Returns {'1'} when the new send may start now, else {'0', seconds until its places are expected}.
PACE_SCRIPT = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local hold = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if ARGV[4] ~= '' then
  local completed = string.format('%.17g', now)
  for i = 1, tonumber(ARGV[5]) do
    redis.call('ZADD', KEYS[1], 'XX', 'LT', completed, ARGV[4] .. '#' .. i)
  end
end
if ARGV[6] == '' then return {'1'} end
local size = tonumber(ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.17g', now - window))
local n = redis.call('ZCARD', KEYS[1])
if n + size <= limit then
  local members = {}
  local until_at = string.format('%.17g', now + hold)
  for i = 1, size do
    members[#members + 1] = until_at
    members[#members + 1] = ARGV[6] .. '#' .. i
  end
  redis.call('ZADD', KEYS[1], unpack(members))
  redis.call('PEXPIRE', KEYS[1], math.ceil((hold + window) * 1000) + 1000)
  return {'1'}
end
-- The send may start once the place `size` before the newest free one is a window old.
local edge = redis.call('ZRANGE', KEYS[1], n + size - limit - 1, n + size - limit - 1, 'WITHSCORES')
return {'0', string.format('%.17g', tonumber(edge[2]) + window - now)}
"""

# How long a send in flight is assumed to take at most (a killed worker's send holds its places this long).
PACE_HOLD_SECONDS = 30.0
# How often a waiting sender asks again while the place it waits for is held by a send in flight
# (which may complete at any moment). A place held by a completed send frees exactly when the hint
# says: places are only ever added, or expire, and completions are stamped in time order.
PACE_POLL_SECONDS = 0.05

NO_SEND = ("", 0)


class Pacer:
    """Paces one connection's sends (one message over SMTP, one request over SendGrid), so that at
    most the rate of messages *arrive* at the provider in any window of one second, across every
    worker, whatever the delays on the way.

    A send of N messages may start only when at most the rate minus N messages completed within the
    window before it or are still in flight. A send counts as completed when its reply was read (this
    connection's next `try_start`, or `done`): no earlier than its arrival. So any two arrivals the
    rate apart are at least a window apart. Without a limit: no Redis call and no wait.

    A send larger than the whole rate takes every place: it goes alone, a window after the last
    completion. It still arrives as one burst, so keep a provider's batch size at most its rate.
    """

    def __init__(self, provider):
        rate = rate_for(provider)
        self.provider = provider
        self.limit = max(1, int(rate)) if rate > 0 else 0
        self.key = f"ratelimit:{provider}:sends"
        self.previous = NO_SEND  # (member, size) of the send whose reply is not read yet
        self.pending = NO_SEND  # the send `try_start` refused
        self.hint = 0.0
        if self.limit:
            self.client = _client(settings.REDIS_URL)
            self._pace = self.client.register_script(PACE_SCRIPT)
            self.prefix = uuid.uuid4().hex
            self.seq = 0

    def _call(self, completed, start):
        reply = self._pace(keys=[self.key], args=[self.limit, window_seconds(), PACE_HOLD_SECONDS,
                                                  *completed, *start])
        return reply[0] in (b"1", "1"), float(reply[1]) if len(reply) > 1 else 0.0

    def try_start(self, size=1):
        """Take SIZE places for the next send now (the previous one is complete): True, or False
        when it must wait (then call `start`)."""
        if not self.limit:
            return True
        self.seq += 1
        send = (f"{self.prefix}:{self.seq}", min(size, self.limit))
        granted, self.hint = self._call(self.previous, send)
        self.previous, self.pending = (send, NO_SEND) if granted else (NO_SEND, send)
        return granted

    def start(self):
        """Wait until the send `try_start` refused may start."""
        began = time.monotonic()
        while True:
            in_flight = self.hint > window_seconds()  # the place's score is its start + the hold
            wait(PACE_POLL_SECONDS if in_flight else max(0.001, self.hint))
            granted, self.hint = self._call(NO_SEND, self.pending)
            if granted:
                break
        self.previous, self.pending = self.pending, NO_SEND
        waited = time.monotonic() - began
        if waited >= 1:  # what a long batch was doing, in the worker log
            logger.info("%s rate limit (%d/s): waited %.1f s for %d sends", self.provider, self.limit, waited,
                        self.previous[1])

    def take(self, size=1):
        """Wait for SIZE places, then hold them for the next send."""
        if not self.try_start(size):
            self.start()

    def done(self):
        """The last send's reply was read: its places free one window from now.

        A Redis error here is logged, not raised: the reply must still be recorded, and the places
        free anyway once their hold runs out (later than needed, never earlier)."""
        if self.limit and self.previous != NO_SEND:
            try:
                self._call(self.previous, NO_SEND)
            except redis.RedisError:
                logger.warning("Could not record a send's completion under the rate limit; its places stay "
                               "held for up to %g s", PACE_HOLD_SECONDS, exc_info=True)
            self.previous = NO_SEND
