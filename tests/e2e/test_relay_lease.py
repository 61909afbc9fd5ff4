"""A relay leader that hangs (SIGSTOP: alive to TCP, silent to PostgreSQL, as a partitioned or
frozen host) loses its lock after DEPLOYX_RELAY_LEASE_SECONDS, and the standby takes over;
woken up, the old leader finds its session gone and stands by (issue 15)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.e2e.processes import ServiceProcess, Services, wait_until
from tests.e2e.test_crash_recovery import assert_stream_matches_log, create_tasks, relay_caught_up

pytestmark = pytest.mark.e2e

LEASE = 3.0


async def _leading(relay: ServiceProcess, since: int) -> bool:
    return _count(relay, "relay_leading") > since


def _count(relay: ServiceProcess, event: str) -> int:
    return sum(1 for line in relay.log_lines() if line.get("event") == event)


async def test_a_hung_leader_loses_the_lease_and_the_standby_publishes(
    services: Services, pool: asyncpg.Pool, nats_url: str
) -> None:
    services.env["DEPLOYX_RELAY_LEASE_SECONDS"] = str(LEASE)
    relays = [services.start("relay-a", "relay"), services.start("relay-b", "relay")]
    for relay in relays:
        await relay.wait_for_log("relay_leading", "relay_standby")
    leader = next(relay for relay in relays if relay.logged("relay_leading"))
    standby = next(relay for relay in relays if relay is not leader)
    far = datetime.now(UTC) + timedelta(days=1)
    await create_tasks(pool, [far] * 50)
    await wait_until(lambda: relay_caught_up(pool), 30, "the leader to publish", relays)

    leader.pause()
    paused = time.monotonic()
    try:
        await create_tasks(pool, [far] * 50)
        await wait_until(lambda: _leading(standby, 0), LEASE + 10, "the standby to lead", [standby])
        took_over = time.monotonic() - paused
        await wait_until(lambda: relay_caught_up(pool), 30, "the standby to publish", [standby])
    finally:
        leader.resume()
    # Woken, the old leader's next statement finds its session ended: it stands by.
    await wait_until(
        lambda: _true(leader.logged("relay_failed")), 15, "the old leader to notice", relays
    )
    await wait_until(
        lambda: _true(_count(leader, "relay_standby") > 0),
        15,
        "the old leader to stand by",
        relays,
    )
    await create_tasks(pool, [far] * 50)
    await wait_until(lambda: relay_caught_up(pool), 30, "the relay to publish the rest", relays)
    await asyncio.sleep(LEASE)  # a healthy leader idle for longer than its lease keeps it
    assert not _lost_lease(standby), standby.log_tail()
    assert len(await assert_stream_matches_log(pool, nats_url)) == 150
    assert not services.errors(), "\n".join(services.errors())
    assert took_over < LEASE + 5
    print(f"\nthe standby led {took_over:.2f} s after the leader hung (lease {LEASE:.0f} s)")


def _lost_lease(relay: ServiceProcess) -> bool:
    return relay.logged("relay_failed")


async def _true(value: bool) -> bool:
    return value
