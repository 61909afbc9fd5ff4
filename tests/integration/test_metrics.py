"""The database facts /metrics reports: how far each reader of the log is behind, and the
devices online, read from a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.infra import metrics
from services.infra.db import create_pool
from services.infra.store import LogCursor, append, read_after, save_checkpoint
from tests.integration.test_event_log import paused


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(database_url, max_size=2)
    try:
        yield created
    finally:
        await created.close()


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


async def test_a_reader_behind_the_log_shows_its_lag_and_none_once_caught_up(
    pool: asyncpg.Pool,
) -> None:
    await append(pool, "t-1", "task", [paused("t-1")], expected_version=0)
    (first,) = await read_after(pool, LogCursor())
    await save_checkpoint(pool, "relay", LogCursor(first.tx_id, first.position))
    for number in range(2, 5):
        await append(pool, f"t-{number}", "task", [paused(f"t-{number}")], expected_version=0)
    await asyncio.sleep(0.05)  # so that the oldest unread event is measurably old

    lag = await metrics.reader_lag(pool, ["relay", "never-ran"])
    events, seconds = lag["relay"]
    assert events == 3
    assert 0.05 <= seconds < 60
    # A reader with no checkpoint is at the start of the log: all four events are ahead of it.
    assert lag["never-ran"][0] == 4

    last = (await read_after(pool, LogCursor()))[-1]
    await save_checkpoint(pool, "relay", LogCursor(last.tx_id, last.position))
    metrics.on_scrape("relay_lag", metrics.relay_lag("relay"))
    scraped = samples(await metrics.exposition(pool))
    assert scraped[("deployx_relay_lag_events", ())] == 0
    assert scraped[("deployx_relay_lag_seconds", ())] == 0


async def test_devices_online_counts_recent_heartbeats_only(pool: asyncpg.Pool) -> None:
    for device, seen in (("fresh", "now()"), ("stale", "now() - interval '10 minutes'")):
        await pool.execute(
            "INSERT INTO devices (id, hostname, os, agent_version, labels, online, registered_at,"
            " last_seen) VALUES ($1, 'h', 'linux', '1', '{}', true, now(), now())",
            device,
        )
        await pool.execute(
            "INSERT INTO device_presence (device_id, last_seen, interval_seconds)"
            f" VALUES ($1, {seen}, 30)",
            device,
        )
    metrics.on_scrape("devices_online", metrics.refresh_devices_online, metrics.DEVICES_ONLINE)
    scraped = samples(await metrics.exposition(pool))
    assert scraped[("deployx_devices_online", ())] == 1
