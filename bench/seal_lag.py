"""Seal lag: how long after an event was written the sealer had it in the audit chain.

Used by bench.fire_burst and bench.fanout with --sealer, which run `deployx sealer` beside the
other services: after their run, this waits until every event of the log is sealed and reports,
per event, sealed_at (the clock when its seal was inserted) minus recorded_at (the clock when
the event was inserted), and how long after the last event the last seal came.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.create_tasks import percentile

# The sealer as the benchmarks start it, beside their other services.
COMMAND = [str(Path(sys.executable).with_name("deployx")), "sealer"]
# An event cannot be sealed before its transaction commits; PostgreSQL keeps no commit times
# (track_commit_timestamp is off), so the last insert of the transaction stands for it.
_LAGS = """
SELECT extract(epoch FROM c.sealed_at - e.recorded_at)::float8 AS lag,
       extract(epoch FROM c.sealed_at - t.committed)::float8 AS after_commit
FROM audit_chain c
JOIN events e ON e.id = c.event_id
JOIN (SELECT tx_id, max(recorded_at) AS committed FROM events GROUP BY tx_id) t
    ON t.tx_id = e.tx_id
"""
_ENDS = """
SELECT extract(epoch FROM (SELECT max(sealed_at) FROM audit_chain)
                        - (SELECT max(recorded_at) FROM events))::float8
"""


@dataclass(frozen=True)
class Spread:
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(percentile(values, 0.5), percentile(values, 0.99), max(values))

    def __str__(self) -> str:
        p50, p99, most = (round(value * 1000) for value in (self.p50, self.p99, self.max))
        return f"p50 {p50} ms, p99 {p99} ms, max {most} ms"


@dataclass(frozen=True)
class SealLag:
    events: int
    from_insert: Spread
    from_commit: Spread  # from the last insert of the event's transaction
    last_after_last: float  # seconds from the last event written to its seal

    def line(self) -> str:
        return (
            f"seal lag over {self.events:,} events: from the event's insert {self.from_insert}; "
            f"from its transaction's commit {self.from_commit}; the last event was sealed "
            f"{self.last_after_last * 1000:.0f} ms after it was written"
        )


async def measure(database_url: str, timeout: float = 120.0) -> SealLag:
    """Waits until the sealer has caught up with the whole log, then measures it."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            events = await conn.fetchval("SELECT count(*) FROM events")
            sealed = await conn.fetchval("SELECT count(*) FROM audit_chain")
            if sealed >= events:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {sealed} of {events} events sealed after {timeout} s")
            await asyncio.sleep(0.1)
        rows = await conn.fetch(_LAGS)
        last = float(await conn.fetchval(_ENDS) or 0.0)
    finally:
        await conn.close()
    return SealLag(
        events=len(rows),
        from_insert=Spread.of([row["lag"] for row in rows]),
        from_commit=Spread.of([row["after_commit"] for row in rows]),
        last_after_last=last,
    )
