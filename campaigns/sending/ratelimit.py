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
from datetime import timedelta

import redis
from django.conf import settings
from django.utils import timezone

from campaigns.exceptions import RateWaitTooLong

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


class RateWaitBudget:
    """How long one batch may still wait for per-second rates, across all its sends (every Pacer of
    the batch shares it). None of these for a send that may wait as long as it takes (a test email)."""

    def __init__(self, seconds):
        self.left = seconds

    @classmethod
    def from_settings(cls):
        seconds = settings.SEND_RATE_WAIT_MAX_SECONDS
        return cls(seconds) if seconds > 0 else None

    def check(self, provider, wait):
        """Raise RateWaitTooLong when a wait of WAIT seconds would overrun the budget."""
        if wait > self.left:
            until = timezone.now() + timedelta(seconds=wait)
            raise RateWaitTooLong(f"{provider} rate limit: the next send waits {wait:.1f} s, longer than this "
                                  f"batch may still wait in its worker", until=until, provider=provider)


class Pacer:
    """Paces one connection's sends (one message over SMTP, one request over SendGrid), so that at
    most the rate of messages *arrive* at the provider in any window of one second, across every
    worker, whatever the delays on the way.

    A send of N messages may start only when at most the rate minus N messages completed within the
    window before it or are still in flight. A send counts as completed when its reply was read (the
    caller says so with `done` as soon as it has read it, or this connection's next `try_start`): no
    earlier than its arrival. So any two arrivals the rate apart are at least a window apart. A rate
    below one a second is one send per 1/rate seconds. Without a limit: no Redis call and no wait.

    A send larger than the whole rate takes every place: it goes alone, a window after the last
    completion. It still arrives as one burst, so keep a provider's batch size at most its rate.
    """

    def __init__(self, provider, rate=None, budget=None):
        rate = rate_for(provider) if rate is None else rate
        self.budget = budget  # a RateWaitBudget, or None: wait as long as it takes
        self.provider = provider
        self.limit = max(1, int(rate)) if rate > 0 else 0
        # A rate below one a second (a per-minute limit spread over its minute) is one send per window
        # of 1/rate seconds, so that 30 a minute is one every 2 s, not one a second.
        self.window = window_seconds() + (1.0 / rate - 1.0 if 0 < rate < 1 else 0.0)
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
        reply = self._pace(keys=[self.key], args=[self.limit, self.window, PACE_HOLD_SECONDS,
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
        """Wait until the send `try_start` refused may start; RateWaitTooLong (nothing taken) when the
        batch's budget cannot cover the wait."""
        began = time.monotonic()
        while True:
            in_flight = self.hint > self.window  # the place's score is its start + the hold
            seconds = PACE_POLL_SECONDS if in_flight else max(0.001, self.hint)
            if self.budget is not None:
                # A place held in flight frees when its reply is read, at the latest within a window.
                self.budget.check(self.provider, self.window if in_flight else seconds)
                self.budget.left -= seconds
            wait(seconds)
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


# --- sending accounts' limits per minute, hour and day (campaigns.sending.routing) -----------------

# KEYS: one sorted set per window of the account (minute, hour, day), each member '<reservation>:<n>'
# scored by when it was taken. ARGV[1]: the reservation id, ARGV[2]: how many places it wants (0:
# only look), then per window: limit (0: none, counted all the same), seconds it lasts, and the
# start of the current window when it is a calendar one (-1: rolling, now - seconds) and when that
# window ends.
# Returns {granted, room left after it (-1: unlimited), when the first full window has room again
# (epoch seconds, 0: none is full), places used in each window ...}.
QUOTA_SCRIPT = """
local id = ARGV[1]
local wanted = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local room = -1
local free_at = 0
local used = {}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[3 + (i - 1) * 4])
  local seconds = tonumber(ARGV[4 + (i - 1) * 4])
  local since = tonumber(ARGV[5 + (i - 1) * 4])
  local ends = tonumber(ARGV[6 + (i - 1) * 4])
  if since < 0 then since = now - seconds end
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. string.format('%.17g', since))
  local n = 0
  local members = redis.call('ZRANGE', KEYS[i], 0, -1, 'WITHSCORES')
  for j = 1, #members, 2 do
    n = n + tonumber(string.match(members[j], ':(%d+)$'))
  end
  used[i] = n
  if limit > 0 then
    local left = math.max(0, limit - n)
    if room < 0 or left < room then room = left end
    if left == 0 then
      -- Rolling: the oldest reservation leaves the window; calendar: the window ends.
      local at = ends
      if ends < 0 then at = tonumber(members[2]) + seconds end
      if at > free_at then free_at = at end
    end
  end
end
local granted = wanted
if room >= 0 and room < granted then granted = room end
if granted > 0 then
  for i = 1, #KEYS do
    local seconds = tonumber(ARGV[4 + (i - 1) * 4])
    redis.call('ZADD', KEYS[i], string.format('%.17g', now), id .. ':' .. granted)
    redis.call('PEXPIRE', KEYS[i], math.ceil(seconds * 1000) + 60000)
    used[i] = used[i] + granted
  end
  if room >= 0 then room = room - granted end
end
local reply = {tostring(granted), tostring(room), string.format('%.17g', free_at)}
for i = 1, #used do reply[#reply + 1] = tostring(used[i]) end
return reply
"""

# KEYS as above; ARGV: the reservation id, what it was granted, what it really used. A reservation
# gives back what it did not use (messages deferred or refused before they were sent).
QUOTA_SETTLE_SCRIPT = """
for i = 1, #KEYS do
  local old = ARGV[1] .. ':' .. ARGV[2]
  local score = redis.call('ZSCORE', KEYS[i], old)
  if score then
    redis.call('ZREM', KEYS[i], old)
    if tonumber(ARGV[3]) > 0 then redis.call('ZADD', KEYS[i], score, ARGV[1] .. ':' .. ARGV[3]) end
  end
end
return 1
"""

QUOTA_WINDOWS = ("minute", "hour", "day")


class QuotaAnswer:
    def __init__(self, reply, windows):
        self.granted = int(reply[0])
        room = int(reply[1])
        self.room = None if room < 0 else room  # None: no limit
        free_at = float(reply[2])
        self.free_at = free_at if free_at > 0 else None  # epoch seconds when a full window has room
        self.used = dict(zip(windows, (int(n) for n in reply[3:])))


class Quota:
    """One account's limits per minute, per hour and per day, shared by every worker in Redis.

    A send reserves its places before it starts (`reserve`), up to the room every window has left,
    and gives back what it did not use (`settle`). A reservation leaves a rolling window that long
    after it was taken; a calendar day (midnight to midnight in TIME_ZONE) ends at once for all.
    The per-second limit is the Pacer's, which spreads the sends inside these windows."""

    def __init__(self, account_key, per_minute=0, per_hour=0, per_day=0, calendar_day=False):
        self.keys = [f"quota:{account_key}:{window}" for window in QUOTA_WINDOWS]
        self.limits = (per_minute, per_hour, per_day)
        self.calendar_day = calendar_day
        client = _client(settings.REDIS_URL)
        self._script = client.register_script(QUOTA_SCRIPT)
        self._settle = client.register_script(QUOTA_SETTLE_SCRIPT)

    def _window_args(self):
        day = settings.SENDING_ACCOUNT_DAY_SECONDS
        since = ends = -1
        if self.calendar_day:
            since, ends = calendar_day_bounds()
            day = ends - since
        return [self.limits[0], 60, -1, -1, self.limits[1], 3600, -1, -1, self.limits[2], day, since, ends]

    def reserve(self, wanted):
        """Take up to WANTED places now: a QuotaAnswer (granted may be 0, then free_at says when)."""
        reservation = uuid.uuid4().hex
        answer = QuotaAnswer(self._script(keys=self.keys, args=[reservation, wanted, *self._window_args()]),
                             QUOTA_WINDOWS)
        answer.reservation = reservation
        return answer

    def look(self):
        """Room and use now, taking nothing."""
        return QuotaAnswer(self._script(keys=self.keys, args=["look", 0, *self._window_args()]), QUOTA_WINDOWS)

    def settle(self, answer, used):
        if answer.granted and used < answer.granted:
            self._settle(keys=self.keys, args=[answer.reservation, answer.granted, max(0, used)])


def calendar_day_bounds():
    """(start, end) of today in TIME_ZONE, epoch seconds."""
    from datetime import datetime

    now = timezone.localtime()
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    end = timezone.make_aware(datetime.combine(start.date() + timedelta(days=1), datetime.min.time()))
    return start.timestamp(), end.timestamp()
