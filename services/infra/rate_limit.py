"""Token buckets, one per key: at most `burst` at once, refilled at `rate` a second.

Pure: the caller passes the time (a monotonic clock's seconds), so tests drive it. Memory is
bounded: past `keys` keys, the one heard from longest ago is forgotten, as if its bucket were
full again (with many keys that is the case long before it is forgotten).
"""

from __future__ import annotations

from collections import OrderedDict

KEYS = 10_000


class TokenBuckets:
    def __init__(self, rate: float, burst: float, keys: int = KEYS) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be above 0, not {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst}")
        if keys < 1:
            raise ValueError(f"keys must be at least 1, not {keys}")
        self._rate, self._burst, self._keys = rate, float(burst), keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    def take(self, key: str, now: float) -> bool:
        """Takes one token of key's bucket at now: True if there was one, False if key must
        wait (a refusal takes nothing)."""
        tokens, then = self._buckets.pop(key, (self._burst, now))
        tokens = min(self._burst, tokens + max(0.0, now - then) * self._rate)
        allowed = tokens >= 1
        self._buckets[key] = (tokens - 1 if allowed else tokens, max(now, then))
        if len(self._buckets) > self._keys:
            self._buckets.popitem(last=False)
        return allowed
