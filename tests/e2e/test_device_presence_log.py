"""Presence in the log: an agent whose heartbeats stop becomes DeviceWentOffline in the log
(not only in the presence table), and one heard again is DeviceRegistered again."""

from __future__ import annotations

import platform
import shutil

import asyncpg
import pytest

from services.agent.capabilities import arch_of
from tests.e2e.fleet import Fleet
from tests.e2e.processes import wait_until

pytestmark = pytest.mark.e2e


async def device_events(pool: asyncpg.Pool, device_id: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT type FROM events WHERE stream_id = $1 ORDER BY version", f"device-{device_id}"
    )
    return [row["type"] for row in rows]


async def logged_online(pool: asyncpg.Pool, device_id: str) -> bool | None:
    online = await pool.fetchval("SELECT online FROM devices WHERE id = $1", device_id)
    return None if online is None else bool(online)


async def test_a_silent_agent_goes_offline_in_the_log_and_comes_back(
    fleet: Fleet, pool: asyncpg.Pool
) -> None:
    agent = fleet.agent("sleepy")
    await fleet.wait_online(["sleepy"])
    assert await device_events(pool, "sleepy") == ["DeviceRegistered"]

    agent.pause()  # a laptop's lid closes: the process lives, its heartbeats stop
    try:

        async def offline_in_the_log() -> bool:
            # The event, and the devices table that follows the log.
            events = await device_events(pool, "sleepy")
            return events == ["DeviceRegistered", "DeviceWentOffline"] and (
                await logged_online(pool, "sleepy") is False
            )

        await wait_until(offline_in_the_log, 45, "DeviceWentOffline", fleet.watched)
        _, devices = await fleet.api.get("/api/devices")
        assert [d["online"] for d in devices["items"] if d["id"] == "sleepy"] == [False]
    finally:
        agent.resume()

    async def back_in_the_log() -> bool:
        return await logged_online(pool, "sleepy") is True

    await wait_until(back_in_the_log, 30, "the device back online in the log", fleet.watched)
    assert await device_events(pool, "sleepy") == [
        "DeviceRegistered",
        "DeviceWentOffline",
        "DeviceRegistered",
    ]


async def test_a_real_agent_announces_what_it_can_run(fleet: Fleet) -> None:
    fleet.agent("able")
    await fleet.wait_online(["able"])

    _, devices = await fleet.api.get("/api/devices")
    (device,) = [device for device in devices["items"] if device["id"] == "able"]
    capabilities = device["capabilities"]
    # This machine (Debian, where the tests run) has these, and none of Windows' shells.
    assert {"bash", "sh", "python3"} <= set(capabilities["shells"])
    assert not {"cmd", "powershell"} & set(capabilities["shells"])
    assert capabilities["shells"] == [s for s in capabilities["shells"] if shutil.which(s)]
    assert "pip" in capabilities["package_managers"]
    assert (capabilities["os"], capabilities["arch"]) == ("linux", arch_of(platform.machine()))
    assert device["heartbeat_seconds"] == 5
