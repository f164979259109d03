"""Per-provider rate limits shared by every worker process: a token bucket held in Redis.

The bucket lives in one Redis hash (``ratelimit:<provider>``) and is updated by a Lua script, so
concurrent workers cannot both spend the same tokens. A request reserves its tokens at once and is
told how long to wait before using them: the bucket may go into debt, which queues callers in the
order they asked (no polling, no starvation of big requests). Time comes from Redis (TIME), so
workers' clocks do not matter.
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

# KEYS[1]: bucket. ARGV: rate (tokens/s), capacity, tokens wanted (<= capacity).
# Returns {wait seconds, ready_at epoch seconds} as strings (Lua numbers would be truncated to integers).
RESERVE_SCRIPT = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * rate)
  ts = now
end
tokens = tokens - wanted
local wait = 0
if tokens < 0 then wait = -tokens / rate end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', ts))
-- An idle bucket is full again after (capacity - tokens) / rate seconds: drop it then.
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate * 1000) + 1000)
return {string.format('%.17g', wait), string.format('%.17g', now + wait)}
"""


@dataclass(frozen=True)
class Reservation:
    tokens: int
    wait: float  # seconds the caller had to wait before using the tokens
    ready_at: float  # Redis time (epoch seconds) from which the tokens may be used


@functools.lru_cache(maxsize=4)
def _client(url):
    return redis.Redis.from_url(url)


class TokenBucket:
    def __init__(self, key, rate, capacity=None, client=None):
        if rate <= 0:
            raise ValueError("rate must be positive (0 means no limit: do not build a bucket)")
        self.key = key
        self.rate = float(rate)
        # About one second of sending; never less than one token.
        self.capacity = max(1, int(capacity if capacity is not None else rate))
        self.client = client or _client(settings.REDIS_URL)
        self._reserve = self.client.register_script(RESERVE_SCRIPT)

    def reserve(self, tokens):
        if not 0 < tokens <= self.capacity:
            raise ValueError(f"reserve between 1 and {self.capacity} tokens, not {tokens}")
        wait, ready_at = self._reserve(keys=[self.key], args=[self.rate, self.capacity, tokens])
        return Reservation(tokens, float(wait), float(ready_at))

    def acquire(self, tokens, sleep=time.sleep):
        """Block until `tokens` are granted; more than the capacity is granted in parts."""
        reservations = []
        while tokens > 0:
            reservation = self.reserve(min(tokens, self.capacity))
            if reservation.wait > 0:
                sleep(reservation.wait)
            reservations.append(reservation)
            tokens -= reservation.tokens
        return reservations


def rate_for(provider):
    return float(getattr(settings, RATE_SETTINGS.get(provider, ""), 0) or 0)


def acquire(provider, tokens, sleep=time.sleep):
    """Wait for `tokens` sends on `provider` under its configured rate (0 = no limit, no Redis call)."""
    rate = rate_for(provider)
    if rate <= 0 or tokens <= 0:
        return []
    reservations = TokenBucket(f"ratelimit:{provider}", rate).acquire(tokens, sleep=sleep)
    waited = sum(r.wait for r in reservations)
    if waited >= 1:
        logger.info("%s rate limit (%g/s): waited %.1f s for %d sends", provider, rate, waited, tokens)
    return reservations
