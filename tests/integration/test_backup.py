"""Backup and restore on a real PostgreSQL: what restore refuses, and what it carries exactly.

The drill across two servers, one far behind the other, is tests/e2e/test_backup_restore.py.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec
import pytest

from events.device import DeviceRegistered
from services.engine.sealer import seal_all_visible
from services.infra.backup import BackupError, backup
from services.infra.backup_file import DamagedBackup, End, Header, check
from services.infra.db import Db
from services.infra.migrations import load_steps
from services.infra.restore import RestoreError, restore
from services.infra.store import LogCursor, append, load_checkpoint, save_checkpoint
from tests.conftest import fresh_database

REBUILT = ["tasks", "task_runs", "executions", "execution_results", "execution_stats_hourly"]
# Kept tables with a column of every kind of type they hold: bytea, arrays, jsonb, real.
_KEPT_ROWS = """
INSERT INTO api_tokens (token_hash, user_name, role) VALUES ('\\x00ff10'::bytea, 'ann', 'viewer');
INSERT INTO idempotency_keys (user_id, key, request_hash, status, body)
    VALUES ('ann', 'k', 'h', 201, '\\x7b7d00'::bytea);
INSERT INTO rejected_messages (device_id, source, reason, sample, count)
    VALUES ('d', 'heartbeat', 'bad', 'é "quoted" \\ back', 3);
INSERT INTO file_usage (user_name, bytes, files) VALUES ('ann', 12345678901, 2);
"""
_KEPT = ("api_tokens", "idempotency_keys", "rejected_messages", "file_usage", "dead_letters")


@pytest.fixture
async def target(postgres_server: str, database_template: str) -> AsyncIterator[str]:
    """A second fresh database, to restore into."""
    async with fresh_database(postgres_server, database_template, "restore") as url:
        yield url


async def register(db: Db, device: str) -> None:
    event = DeviceRegistered(device_id=device, registered_at=datetime.now(UTC))
    await append(db, f"device-{device}", "devices", [event], expected_version=None)


async def interleaved(pool: asyncpg.Pool) -> None:
    """Two commits out of position order: the log turns back once."""
    async with pool.acquire() as first, pool.acquire() as second, first.transaction():
        await first.execute("SELECT pg_current_xact_id()")
        await register(second, "late")
        await register(first, "early")


async def backed_up(database_url: str, path: Path) -> tuple[Header, End]:
    conn = await asyncpg.connect(database_url)
    try:
        await backup(conn, path, REBUILT)
    finally:
        await conn.close()
    return check(path)


async def restored(database_url: str, path: Path, known_step: int | None = None) -> None:
    """Restores as `deployx restore` of this version does: it knows the shipped steps."""
    header, end = check(path)
    if known_step is None:
        known_step = len(load_steps())
    conn = await asyncpg.connect(database_url)
    try:
        await restore(conn, path, header, end, known_step)
    finally:
        await conn.close()


async def rows_of(conn: asyncpg.Connection, table: str) -> list[str]:
    return sorted(await conn.fetchval(f"SELECT array_agg(to_jsonb(t)::text) FROM {table} t") or [])


async def test_a_round_trip_keeps_rows_order_and_moves_checkpoints(
    database_url: str, target: str, tmp_path: Path
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=2)
    assert pool is not None
    try:
        await register(pool, "first")
        await interleaved(pool)
        async with pool.acquire() as conn:
            await seal_all_visible(conn)
            middle = await conn.fetchrow(
                "SELECT tx_id::text::bigint AS tx_id, position FROM events "
                "ORDER BY tx_id, position OFFSET 1 LIMIT 1"
            )
            assert middle is not None
            await save_checkpoint(conn, "webhooks", LogCursor(middle["tx_id"], middle["position"]))
            await save_checkpoint(conn, "relay", LogCursor(middle["tx_id"], middle["position"]))
            await conn.execute(_KEPT_ROWS)
            await conn.execute(
                "INSERT INTO dead_letters (consumer, event_id, position, stream_id, event_type, "
                "error) SELECT 'relay', id, position, stream_id, type, 'too big' FROM events "
                "ORDER BY position LIMIT 1"
            )
            await register(conn, "after the seal")  # not sealed: the sealer takes it later
    finally:
        await pool.close()
    path = tmp_path / "backup"
    _, end = await backed_up(database_url, path)
    assert end.runs == 2
    await restored(target, path)

    old, new = await asyncpg.connect(database_url), await asyncpg.connect(target)
    try:
        order = "SELECT id, position, data::text, recorded_at FROM events ORDER BY tx_id, position"
        assert [tuple(r) for r in await new.fetch(order)] == [
            tuple(r) for r in await old.fetch(order)
        ]
        for table in (*_KEPT, "audit_chain"):
            assert await rows_of(new, table) == await rows_of(old, table), table
        # A checkpoint at an event now names that event's new place; the relay starts over.
        moved = await load_checkpoint(new, "webhooks")
        assert moved.position == middle["position"]
        assert await new.fetchval(
            "SELECT id FROM events WHERE tx_id = $1::text::xid8 AND position = $2",
            str(moved.tx_id),
            moved.position,
        ) == await old.fetchval("SELECT id FROM events WHERE position = $1", middle["position"])
        assert await load_checkpoint(new, "relay") == LogCursor()
        # Sequences go on after the rows restored with explicit values.
        assert await new.fetchval("SELECT nextval('events_position_seq')") > await old.fetchval(
            "SELECT max(position) FROM events"
        )
        assert await new.fetchval("SELECT nextval('dead_letters_id_seq')") > 1
        # The sealer carries on from the restored head: the unsealed event is sealed next.
        assert await seal_all_visible(new) == 1
    finally:
        await old.close()
        await new.close()


async def test_restore_refuses_a_database_that_has_events(
    database_url: str, target: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await register(conn, "old")
    finally:
        await conn.close()
    path = tmp_path / "backup"
    await backed_up(database_url, path)
    conn = await asyncpg.connect(target)
    try:
        await register(conn, "already here")
        with pytest.raises(RestoreError, match="already holds events"):
            await restored(target, path)
        assert await conn.fetchval("SELECT count(*) FROM events") == 1
    finally:
        await conn.close()


async def test_a_damaged_or_cut_backup_is_refused_before_anything_loads(
    database_url: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await register(conn, "x")
    finally:
        await conn.close()
    path = tmp_path / "backup"
    await backed_up(database_url, path)
    lines = path.read_bytes().splitlines(keepends=True)
    cut = tmp_path / "cut"
    cut.write_bytes(b"".join(lines[:-1]))
    with pytest.raises(DamagedBackup, match="incomplete"):
        check(cut)
    altered = tmp_path / "altered"
    altered.write_bytes(b"".join(lines).replace(b'"device_id": "x"', b'"device_id": "y"'))
    with pytest.raises(DamagedBackup, match="checksum"):
        check(altered)


async def test_a_backup_of_a_newer_schema_is_refused(
    database_url: str, target: str, tmp_path: Path
) -> None:
    path = tmp_path / "backup"
    header, end = await backed_up(database_url, path)
    newer = msgspec.structs.replace(header, schema_step=header.schema_step + 1)
    conn = await asyncpg.connect(target)
    try:
        with pytest.raises(RestoreError, match="schema step"):
            await restore(conn, path, newer, end, known_step=header.schema_step)
    finally:
        await conn.close()


async def test_backup_refuses_transaction_ids_it_cannot_carry(
    database_url: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TABLE stray (at xid8)")
        with pytest.raises(BackupError, match="stray"):
            await backup(conn, tmp_path / "backup", REBUILT)
    finally:
        await conn.close()
    assert not os.listdir(tmp_path), "a refused backup left a file behind"
