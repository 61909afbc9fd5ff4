"""Versioned migrations on a real PostgreSQL: each step once, with a lock timeout, and writes to
the log never held up longer than that timeout while a reader holds `events` (issue 15)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from events.device import DeviceRegistered
from services.cli.migrate import check
from services.infra.migrations import (
    MigrationError,
    Step,
    applied,
    base_step,
    load_steps,
    migrate,
)
from services.infra.store import append
from tests.conftest import SCHEMA, with_database
from tests.e2e.processes import deployx_command

LOCK_TIMEOUT = 0.5
# A statement on `events` that needs its strongest lock, as a column change does.
EXCLUSIVE = Step(number=1, name="events_note", sql="ALTER TABLE events ADD COLUMN note text")


@pytest.fixture
async def bare_database(postgres_server: str) -> AsyncIterator[str]:
    """A database as an earlier DeployX left it: schema.sql run whole, no record of it."""
    name = f"old_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = with_database(postgres_server, name)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SCHEMA.read_text())
    finally:
        await conn.close()
    yield url
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


async def test_an_earlier_database_is_adopted_once_then_nothing_runs(bare_database: str) -> None:
    assert await migrate(bare_database, steps=[]) == ["base (schema.sql)"]
    assert await migrate(bare_database, steps=[]) == []
    conn = await asyncpg.connect(bare_database)
    try:
        assert set(await applied(conn)) == {0}
    finally:
        await conn.close()


async def test_an_up_to_date_migrate_takes_no_lock_on_the_log(database_url: str) -> None:
    """Even with `events` locked against everything, a migrate with nothing to do returns."""
    await migrate(database_url, steps=[])
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            done = await asyncio.wait_for(migrate(database_url, steps=[]), timeout=10)
            assert done == [] and time.monotonic() - started < 5
    finally:
        await holder.close()


async def test_a_step_behind_a_reader_never_holds_writes_longer_than_the_lock_timeout(
    bare_database: str,
) -> None:
    # A database without the shipped steps: EXCLUSIVE is its step 1.
    database_url = bare_database
    await migrate(database_url, steps=[])
    reader = await asyncpg.connect(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    latencies: list[float] = []
    stop = asyncio.Event()

    async def write() -> None:
        while not stop.is_set():
            began = time.monotonic()
            event = DeviceRegistered(device_id="w", registered_at=datetime.now(UTC))
            await append(pool, "device-w", "devices", [event], expected_version=None)
            latencies.append(time.monotonic() - began)
            await asyncio.sleep(0.02)

    try:
        writer = asyncio.create_task(write())
        # A reader holds `events` (a long report, a pg_dump) for 4 s.
        read = reader.transaction()
        await read.start()
        await reader.fetchval("SELECT count(*) FROM events")
        migration = asyncio.create_task(
            migrate(database_url, steps=[EXCLUSIVE], lock_timeout=LOCK_TIMEOUT)
        )
        await asyncio.sleep(4)
        assert not migration.done(), "the step ran while the reader held the table"
        await read.commit()
        assert await asyncio.wait_for(migration, timeout=30) == ["0001_events_note"]
        await asyncio.sleep(0.3)
        stop.set()
        await writer
    finally:
        await reader.close()
        await pool.close()
    assert len(latencies) > 20
    # The step waited (and so held the writes queued behind it) LOCK_TIMEOUT at a time, then
    # let them through; a scheduler's hiccup on a busy machine is allowed for on top.
    assert max(latencies) < LOCK_TIMEOUT + 0.7, f"a write waited {max(latencies):.2f} s"
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = 'events' AND column_name = 'note'"
        )
    finally:
        await conn.close()


async def test_contract_steps_wait_for_their_turn_and_edited_history_is_refused(
    bare_database: str,
) -> None:
    database_url = bare_database  # without the shipped steps: these are its steps 1 to 3
    await migrate(database_url, steps=[])
    expand = Step(number=1, name="add_x", sql="CREATE TABLE x (a int, b int)")
    contract = Step(number=2, name="drop_b", sql="ALTER TABLE x DROP COLUMN b", phase="contract")
    later = Step(number=3, name="add_y", sql="CREATE TABLE y (a int)")
    steps = [expand, contract, later]
    assert await migrate(database_url, steps=steps) == ["0001_add_x", "0003_add_y"]
    assert await check(database_url, contract=False, steps=steps) == 0
    assert await check(database_url, contract=True, steps=steps) == 1
    assert await migrate(database_url, steps=steps, contract=True) == ["0002_drop_b"]
    assert await check(database_url, contract=True, steps=steps) == 0

    edited = Step(number=1, name="add_x", sql="CREATE TABLE x (a bigint, b int)")
    with pytest.raises(MigrationError, match="0001_add_x"):
        await migrate(database_url, steps=[edited, contract, later])
    assert await check(database_url, contract=False, steps=[edited, contract, later]) == 2
    # An older version, which knows fewer steps, says the database is newer than it.
    assert await check(database_url, contract=False, steps=[expand]) == 2


async def test_the_base_runs_again_when_schema_sql_changed(bare_database: str) -> None:
    database_url = bare_database  # without the shipped steps, which `steps=[]` leaves out
    await migrate(database_url, steps=[])
    grown = base_step()
    grown = Step(
        number=0,
        name=grown.name,
        sql=grown.sql + "\nCREATE TABLE IF NOT EXISTS added_later (id int PRIMARY KEY);\n",
        transactional=False,
    )
    assert await check(database_url, contract=False, steps=[], base=grown) == 1
    assert await migrate(database_url, steps=[], base=grown) == ["base (schema.sql)"]
    assert await migrate(database_url, steps=[], base=grown) == []
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('added_later') IS NOT NULL")
    finally:
        await conn.close()


def test_steps_are_numbered_without_gaps(tmp_path: Path) -> None:
    (tmp_path / "0001_first.sql").write_text("-- phase: expand\nSELECT 1;\n")
    (tmp_path / "0002_second.sql").write_text(
        "-- phase: contract\n-- transaction: none\nSELECT 2;\n"
    )
    first, second = load_steps(tmp_path)
    assert (first.phase, first.transactional) == ("expand", True)
    assert (second.phase, second.transactional) == ("contract", False)
    (tmp_path / "0004_gap.sql").write_text("SELECT 4;\n")
    with pytest.raises(MigrationError, match="numbered"):
        load_steps(tmp_path)


def test_the_shipped_steps_load() -> None:
    load_steps()


async def deployx_migrate(database_url: str, *args: str) -> tuple[int, str]:
    env = dict(os.environ) | {"DEPLOYX_DATABASE_URL": database_url, "DEPLOYX_LOG_FORMAT": "json"}
    proc = await asyncio.create_subprocess_exec(
        *deployx_command(),
        "migrate",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_migrate_check_tells_ci_whether_anything_is_pending(bare_database: str) -> None:
    code, out = await deployx_migrate(bare_database, "--check")
    assert (code, "pending: the base" in out) == (1, True), out
    code, out = await deployx_migrate(bare_database)
    assert code == 0 and "applied base (schema.sql)" in out, out
    code, out = await deployx_migrate(bare_database, "--check")
    assert (code, "the schema is up to date" in out) == (0, True), out
