"""Per-user allowances that bound what one staff member can make the servers do: test emails an hour,
audience counts a minute (issue 22, item 9).

The counters live in Redis (the cache), so every web process shares them. A window starts at the first
use (so no clock boundary lets a burst through twice), and a refused request does not count.
"""

from django.core.cache import cache


def spend(name, user_id, amount, limit, window_seconds) -> bool:
    """Count AMOUNT against USER_ID's allowance NAME (LIMIT per WINDOW_SECONDS); False, and nothing counted,
    when it would go over."""
    key = f"allowance:{name}:user:{user_id}"
    cache.add(key, 0, timeout=window_seconds)
    try:
        used = cache.incr(key, amount)
    except ValueError:  # the window ended between add and incr
        cache.set(key, amount, timeout=window_seconds)
        used = amount
    if used > limit:
        cache.decr(key, amount)
        return False
    return True
