"""Subscriptions whose endpoint keeps failing rest a while: one round of tries per pause.

Without it a dead endpoint is tried once per queued delivery as each one's backoff ends, and
its quick failures take the sender's rounds from the healthy subscriptions. With it, after a
failed round nothing more of that subscription is claimed until the pause ends (growing like a
delivery's own backoff while the rounds keep failing); one success ends it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from services.domain.webhooks import retry_delay


class Cooldowns:
    """One sender's view: each replica pauses a failing subscription on its own."""

    def __init__(
        self, first: float, limit: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._first, self._limit, self._clock = first, limit, clock
        self._until: dict[str, float] = {}
        self._since: dict[str, float] = {}
        self._strikes: dict[str, int] = {}

    def failed(self, webhook_id: str, started: float) -> None:
        """A try begun at `started` (the clock's time) failed; tries begun before the current
        pause belong to the round that started it and do not lengthen it."""
        if started < self._since.get(webhook_id, float("-inf")):
            return
        strikes = self._strikes.get(webhook_id, 0) + 1
        now = self._clock()
        self._strikes[webhook_id], self._since[webhook_id] = strikes, now
        self._until[webhook_id] = now + retry_delay(strikes, self._first, self._limit)

    def succeeded(self, webhook_id: str) -> None:
        for table in (self._until, self._since, self._strikes):
            table.pop(webhook_id, None)

    def resting(self) -> list[str]:
        """The subscriptions to leave alone now."""
        now = self._clock()
        return [webhook_id for webhook_id, until in self._until.items() if until > now]
