"""Thousands of agents starting together (simulated, over real NATS, bench/sim_agents.py): each
is registered in the log once, and none is taken for offline meanwhile, though their announced
heartbeat interval is short: the registry's appends must not hold up its presence writes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from bench.sim_agents import DEVICE_PREFIX
from services.engine.presence_log import MISSED_HEARTBEATS
from services.engine.registry import SWEEP_EVERY
from tests.stack import Stack

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
DEVICES = 4000
BEAT_EVERY = 1.0
# Offline after three announced intervals without a heartbeat: 9 s.
ANNOUNCED = 3.0


@pytest.fixture
def simulated_agents(nats_url: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = os.environ | {"DEPLOYX_NATS_URL": nats_url, "PYTHONPATH": str(REPO_ROOT)}
    command = [
        *(sys.executable, "-m", "bench.sim_agents", "--devices", str(DEVICES)),
        *("--interval", str(BEAT_EVERY), "--announced-interval", str(ANNOUNCED)),
        *("--summary", str(tmp_path / "agents.json")),
    ]
    with open(tmp_path / "agents.log", "wb") as output:
        agents = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=output, stderr=output)
    try:
        yield agents
    finally:
        agents.send_signal(signal.SIGTERM)
        try:
            agents.wait(10)
        except subprocess.TimeoutExpired:
            agents.kill()
            agents.wait()


async def device_events(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT type, count(*) AS n FROM events WHERE starts_with(stream_id, $1) GROUP BY type",
        f"device-{DEVICE_PREFIX}",
    )
    return {row["type"]: row["n"] for row in rows}


async def online_in_the_log(pool: asyncpg.Pool) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM devices WHERE starts_with(id, $1) AND online", DEVICE_PREFIX
        )
    )


async def test_thousands_of_agents_starting_together_are_registered_once_and_stay_online(
    stack: Stack, pool: asyncpg.Pool, simulated_agents: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + 180
    while await online_in_the_log(pool) < DEVICES:
        assert simulated_agents.poll() is None, "the simulated agents exited"
        assert time.monotonic() < deadline, f"registered: {await device_events(pool)}"
        events = await device_events(pool)
        assert events.get("DeviceWentOffline", 0) == 0, f"devices flapped offline: {events}"
        await asyncio.sleep(0.25)
    # Every device online; through a whole silence window and a sweep after it, none may be
    # found silent, nor registered a second time.
    watch_until = time.monotonic() + MISSED_HEARTBEATS * ANNOUNCED + SWEEP_EVERY
    while time.monotonic() < watch_until:
        events = await device_events(pool)
        assert events == {"DeviceRegistered": DEVICES}, f"devices flapped: {events}"
        await asyncio.sleep(0.25)
    assert await online_in_the_log(pool) == DEVICES
