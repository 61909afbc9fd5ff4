"""Prometheus metrics: the series every service exports on /metrics, and what reads the
database for them when Prometheus scrapes.

Counters and gauges a service keeps in memory are defined here and updated where things
happen. Gauges that are facts of the database (how far a reader of the log is behind, devices
online, dead letters) are read at scrape time by the refreshers a service registered: each
process exports only what its own services are responsible for, so that replicas of other
services do not repeat the same series.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, generate_latest
from prometheus_client.registry import Collector

from services.infra.db import UNAVAILABLE, describe
from services.infra.dead_letters import open_counts

log = structlog.get_logger("deployx.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST.split(";")[0]
# Events behind are counted up to this many: a reader further behind shows this figure.
LAG_COUNT_LIMIT = 1_000_000

RELAY_LAG_EVENTS = Gauge(
    "deployx_relay_lag_events",
    "Events in the log the relay has not yet published to NATS",
    registry=None,
)
RELAY_LAG_SECONDS = Gauge(
    "deployx_relay_lag_seconds",
    "Age of the oldest event the relay has not yet published (0 when caught up)",
    registry=None,
)
PROJECTION_LAG_EVENTS = Gauge(
    "deployx_projection_lag_events",
    "Events in the log a projection has not yet applied",
    ["projection"],
    registry=None,
)
PROJECTION_LAG_SECONDS = Gauge(
    "deployx_projection_lag_seconds",
    "Age of the oldest event a projection has not yet applied (0 when caught up)",
    ["projection"],
    registry=None,
)
TICKER_FIRED = Counter(
    "deployx_ticker_fired_total",
    "Events the ticker recorded for tasks that came due",
    registry=None,
)
TICKER_DECIDED = Counter(
    "deployx_ticker_decided_total",
    "Due tasks the ticker decided (fired, missed, skipped, held by jitter, or lost a race)",
    registry=None,
)
TICKER_LOST_RACES = Counter(
    "deployx_ticker_lost_races_total",
    "Decisions of the ticker that lost to a newer version of their task (another ticker, a user)",
    registry=None,
)
EXECUTOR_RUNS_IN_FLIGHT = Gauge(
    "deployx_executor_runs_in_flight",
    "Executions this executor is running now",
    ["task_type"],
    registry=None,
)
EXECUTOR_RESULTS = Counter(
    "deployx_executor_results_total",
    "Device results the executor recorded, by status",
    ["task_type", "status"],
    registry=None,
)
DEVICES_ONLINE = Gauge(
    "deployx_devices_online",
    "Devices whose agent has sent a heartbeat recently (online)",
    registry=None,
)
DEAD_LETTERS = Gauge(
    "deployx_dead_letters_open",
    "Events set aside by a consumer, not yet resolved",
    ["consumer"],
    registry=None,
)

Refresher = Callable[[asyncpg.Pool], Awaitable[None]]
_refreshers: dict[str, Refresher] = {}
_exported: set[int] = set()


def export(*collectors: Collector) -> None:
    """Adds a service's own series to this process's /metrics (once each). Nothing is exported
    merely by being imported: a projector shows no relay lag, not even a 0."""
    for collector in collectors:
        if id(collector) not in _exported:
            REGISTRY.register(collector)
            _exported.add(id(collector))


def on_scrape(name: str, refresher: Refresher, *collectors: Collector) -> None:
    """Exports collectors, and runs refresher (which sets them) before each exposition of this
    process's metrics (one refresher per name)."""
    export(*collectors)
    _refreshers[name] = refresher


async def exposition(pool: asyncpg.Pool) -> bytes:
    """The process's metrics in Prometheus' text format, database facts read just now; a
    fact that cannot be read keeps its last value (the rest still answers)."""
    for name, refresh in list(_refreshers.items()):
        try:
            await refresh(pool)
        except UNAVAILABLE as exc:
            log.warning("metrics_refresh_failed", metric=name, error=describe(exc))
    return generate_latest()


# For each reader: how many events lie past its checkpoint (up to a limit), and when the first
# of them was recorded. A reader with no checkpoint yet is at the start of the log.
_LAG = """
SELECT r.name,
    (SELECT count(*) FROM (
        SELECT 1 FROM events e
        WHERE (e.tx_id, e.position) > (coalesce(c.tx_id, '0'), coalesce(c.position, 0))
        LIMIT $2) behind) AS events,
    coalesce(extract(epoch FROM now() - (
        SELECT e.recorded_at FROM events e
        WHERE (e.tx_id, e.position) > (coalesce(c.tx_id, '0'), coalesce(c.position, 0))
        ORDER BY e.tx_id, e.position LIMIT 1)), 0)::float8 AS seconds
FROM unnest($1::text[]) AS r(name)
LEFT JOIN checkpoints c ON c.name = r.name
"""


async def reader_lag(pool: asyncpg.Pool, names: Sequence[str]) -> dict[str, tuple[int, float]]:
    """Each reader's (events behind, seconds behind)."""
    rows = await pool.fetch(_LAG, list(names), LAG_COUNT_LIMIT, timeout=5)
    return {row["name"]: (row["events"], max(0.0, row["seconds"])) for row in rows}


def relay_lag(checkpoint: str) -> Refresher:
    export(RELAY_LAG_EVENTS, RELAY_LAG_SECONDS)

    async def refresh(pool: asyncpg.Pool) -> None:
        events, seconds = (await reader_lag(pool, [checkpoint]))[checkpoint]
        RELAY_LAG_EVENTS.set(events)
        RELAY_LAG_SECONDS.set(seconds)

    return refresh


def projection_lag(names: Sequence[str]) -> Refresher:
    export(PROJECTION_LAG_EVENTS, PROJECTION_LAG_SECONDS)

    async def refresh(pool: asyncpg.Pool) -> None:
        for name, (events, seconds) in (await reader_lag(pool, names)).items():
            PROJECTION_LAG_EVENTS.labels(name).set(events)
            PROJECTION_LAG_SECONDS.labels(name).set(seconds)

    return refresh


# Online as the devices page says it (projections/device_views.py): a heartbeat within three
# of the agent's intervals.
_ONLINE = """
SELECT count(*) FROM devices d JOIN device_presence p ON p.device_id = d.id
WHERE p.last_seen > now() - make_interval(secs => p.interval_seconds * 3)
"""


async def refresh_devices_online(pool: asyncpg.Pool) -> None:
    DEVICES_ONLINE.set(await pool.fetchval(_ONLINE, timeout=5))


async def refresh_dead_letters(pool: asyncpg.Pool) -> None:
    counts = await open_counts(pool)
    DEAD_LETTERS.clear()
    for consumer, count in counts.items():
        DEAD_LETTERS.labels(consumer).set(count)
