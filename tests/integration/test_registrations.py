"""DeviceRegistered appended for a fleet starting together: many statements, several at once
(services/engine/presence_log.py), each agent start in the log once, every one reported."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from services.agent.protocol import Heartbeat
from services.engine import presence_log
from services.engine.presence_log import record_registrations
from services.engine.registry import registration_id
from services.infra.db import create_pool

DEVICES = 1000


def starts(started_at: datetime) -> list[tuple[Heartbeat, str]]:
    beats = [
        Heartbeat(
            device_id=f"fleet-{number:04d}",
            hostname=f"fleet-{number:04d}",
            os="linux",
            agent_version="1",
            started_at=started_at,
            sent_at=started_at,
            interval_seconds=5,
        )
        for number in range(DEVICES)
    ]
    return [(beat, registration_id(beat)) for beat in beats]


async def test_a_fleet_is_registered_once_in_statements_run_together(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence_log, "CHUNK", 70)  # 15 statements, 3 at a time
    first_start = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    pool = await create_pool(database_url, max_size=4)
    try:
        told = await record_registrations(pool, starts(first_start), 3, new=True)
        # A registry started again hears the same agents: nothing new to write.
        again = await record_registrations(pool, starts(first_start), 3, new=True)
        # Every agent restarts: their streams exist, version 1 is taken.
        restart = starts(first_start + timedelta(minutes=1))
        restarted = await record_registrations(pool, restart, 3, new=True)
        rows = await pool.fetch(
            "SELECT stream_id, version, id::text FROM events WHERE type = 'DeviceRegistered'"
        )
    finally:
        await pool.close()
    first_ids = {key for _, key in starts(first_start)}
    assert told == first_ids
    assert again == first_ids
    assert restarted == {key for _, key in restart}
    assert {row["id"] for row in rows} == first_ids | restarted
    versions: dict[str, list[int]] = defaultdict(list)
    for row in sorted(rows, key=lambda row: row["version"]):
        versions[row["stream_id"]].append(row["version"])
    assert versions == {f"device-fleet-{number:04d}": [1, 2] for number in range(DEVICES)}
