"""The restore drill (issue 15): a log backed up while it is written, restored onto a new
PostgreSQL whose transaction counter is far behind the old one's, and written on again.

Afterwards every event is readable, in the same order, and published exactly once; the events
written after the restore follow the restored ones for every reader; replay equals live; the
audit chain verifies; tokens, idempotency keys, group ids and webhooks carried over.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest

from events.device import DeviceRegistered
from services.engine.relay import CHECKPOINT as RELAY
from services.engine.relay import ensure_stream, run_relay
from services.engine.replay import rebuild
from services.engine.sealer import seal_all_visible
from services.engine.webhook_enqueuer import enqueue_step
from services.infra.backup_file import check
from services.infra.db import create_pool, ensure_database, migrate
from services.infra.embedded import free_port
from services.infra.embedded_postgres import EmbeddedPostgres
from services.infra.restore import advance_transaction_ids
from services.infra.store import append
from tests.conftest import with_database
from tests.e2e.api import GROUPS, TASKS, command_task
from tests.e2e.processes import deployx_command, wait_until
from tests.e2e.test_crash_recovery import assert_stream_matches_log, relay_caught_up
from tests.integration.test_projections import read_tables
from tests.stack import Client, running_stack

pytestmark = pytest.mark.e2e

# The old server's counter is this far ahead of a new one's (about 800 after initdb).
OLD_SERVER_XID = 300_000
# Commits out of position order, each starting a new run of the log: more runs than a new
# server has transaction ids, so restore must spend some first.
OUT_OF_ORDER = 1000
_PROJECTED = """
SELECT coalesce(bool_and((c.tx_id, c.position) >= (e.tx_id, e.position)), false)
FROM checkpoints c,
     (SELECT tx_id, position FROM events ORDER BY tx_id DESC, position DESC LIMIT 1) e
WHERE c.name = ANY('{tasks,executions,devices}')
"""
_EVENT = """
SELECT id::text, position, stream_id, version, type, category, schema_version, data::text,
       metadata::text, recorded_at
FROM events ORDER BY tx_id, position
"""


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL of the test's own: its transaction counter is the test's to move."""
    base = Path(tempfile.mkdtemp(prefix="deployx-restore-pg-"))
    server = EmbeddedPostgres(base / "data", port=free_port(), fsync=False)
    try:
        yield with_database(server.start(), "deployx")
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def servers() -> Iterator[tuple[str, str]]:
    with postgres_server() as old, postgres_server() as new:
        yield old, new


async def deployx(*args: str, database_url: str) -> str:
    """Runs `deployx ARGS` against database_url; its output (it must exit 0)."""
    env = dict(os.environ) | {"DEPLOYX_DATABASE_URL": database_url, "DEPLOYX_LOG_FORMAT": "json"}
    proc = await asyncio.create_subprocess_exec(
        *deployx_command(),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, f"deployx {' '.join(args)} exited {proc.returncode}:\n{text}"
    return text


def registered(device: str) -> list[DeviceRegistered]:
    return [DeviceRegistered(device_id=device, registered_at=datetime.now(UTC))]


async def out_of_order_commits(pool: asyncpg.Pool, count: int) -> None:
    """`count` pairs of appends that commit out of position order: the first transaction takes
    its transaction id, the second appends and commits, then the first appends (a higher
    position, a lower tx_id) and commits. Each pair turns the log back once in position."""
    async with pool.acquire() as first, pool.acquire() as second:
        for n in range(count):
            async with first.transaction():
                await first.execute("SELECT pg_current_xact_id()")
                await append(second, f"device-late-{n}", "devices", registered("b"), **_ANY)
                await append(first, f"device-early-{n}", "devices", registered("a"), **_ANY)


_ANY: dict[str, Any] = {"expected_version": None}


@contextlib.asynccontextmanager
async def relay(pool: asyncpg.Pool, nats_url: str) -> AsyncIterator[None]:
    """The relay, in this process, until the block ends."""
    client = await nats.connect(nats_url)
    stop = asyncio.Event()
    js = client.jetstream()
    await ensure_stream(js)
    task = asyncio.create_task(run_relay(pool, client, stop))
    try:
        yield
    finally:
        stop.set()
        await task
        await client.close()


async def until(condition: Any, timeout: float, what: str) -> None:
    await wait_until(condition, timeout, what, [])


async def write_old_log(url: str, nats_url: str) -> dict[str, Any]:
    """Everything a log holds, on the old server; what the checks later need to know."""
    async with running_stack(url, nats_url) as stack:
        admin = await stack.client("ops", "admin")
        assert admin.token is not None
        status, hook = await admin.post(
            "/api/webhooks",
            {
                "url": "http://127.0.0.1:9/hook",
                "event_types": ["TaskCreated"],
                "secret": "a-secret-of-16-chars",
            },
        )
        assert status == 201, hook
        groups = [
            (await admin.post(GROUPS, {"name": f"g{n}", "device_ids": ["d"]}))[1] for n in (1, 2)
        ]
        keyed = {"Idempotency-Key": "create-once"}
        created = await admin.post(TASKS, command_task(name="kept"), headers=keyed)
        assert created[0] == 201, created
        task_id = created[1]["id"]
        assert (await admin.put(f"{TASKS}/{task_id}", {"name": "kept, renamed"}))[0] == 200
        assert (await admin.post(f"{TASKS}/{task_id}/pause"))[0] == 200
        assert (await admin.post(f"{TASKS}/{task_id}/execute"))[0] == 202
        await out_of_order_commits(stack.pool, OUT_OF_ORDER)
        async with stack.pool.acquire() as conn:
            while await enqueue_step(conn, 3600.0):
                pass
            await seal_all_visible(conn)
        async with relay(stack.pool, nats_url):
            await until(lambda: relay_caught_up(stack.pool), 30, "the old relay to publish")
        return {
            "token": admin.token,
            "task": created[1],
            "groups": [group["id"] for group in groups],
        }


async def backup_while_writing(url: str, out: Path) -> int:
    """`deployx backup` while events keep being appended; how many were appended meanwhile."""
    pool = await create_pool(url, max_size=2)
    stop = asyncio.Event()
    written = 0

    async def writer() -> None:
        nonlocal written
        while not stop.is_set():
            await append(pool, f"device-busy-{written}", "devices", registered("busy"), **_ANY)
            written += 1

    task = asyncio.create_task(writer())
    try:
        await until(lambda: _true(written > 20), 10, "the writer to start")
        await deployx("backup", "--out", str(out), database_url=url)
        await until(lambda: _true(written > 40), 10, "the writer to go on")
    finally:
        stop.set()
        await task
        await pool.close()
    return written


async def _true(value: bool) -> bool:
    return value


async def test_restore_onto_a_server_behind_keeps_every_event_readable_and_published(
    servers: tuple[str, str], nats_url: str, tmp_path: Path
) -> None:
    old_url, new_url = servers
    await ensure_database(old_url)
    await migrate(old_url)
    old = await asyncpg.connect(old_url)
    try:
        await advance_transaction_ids(old, OLD_SERVER_XID)
    finally:
        await old.close()
    facts = await write_old_log(old_url, nats_url)
    backup_file = tmp_path / "deployx.backup"
    await backup_while_writing(old_url, backup_file)
    assert backup_file.stat().st_mode & 0o777 == 0o600
    _, end = check(backup_file)

    old = await asyncpg.connect(old_url)
    try:
        old_events = {row["id"]: tuple(row) for row in await old.fetch(_EVENT)}
        old_order = [row["id"] for row in await old.fetch(_EVENT)]
        old_group_seq = int(await old.fetchval("SELECT last_value FROM device_group_ids"))
    finally:
        await old.close()

    restored_out = await deployx("restore", "--file", str(backup_file), database_url=new_url)
    assert "transaction ids spent first" in restored_out, restored_out
    assert f"replayed {end.rows['events']} events" in restored_out, restored_out

    new = await asyncpg.connect(new_url)
    try:
        # The backup is one snapshot: a prefix of what was written, every row as it was, in
        # the same log order, with tx_ids the new server has passed.
        rows = await new.fetch(_EVENT)
        assert len(rows) == end.rows["events"] < len(old_events)
        assert {row["id"]: tuple(row) for row in rows}.items() <= old_events.items()
        assert [row["id"] for row in rows] == [i for i in old_order if i in {r["id"] for r in rows}]
        restored_max = int(await new.fetchval("SELECT max(tx_id)::text::bigint FROM events"))
        assert restored_max < int(await new.fetchval("SELECT pg_current_xact_id()::text::bigint"))
        assert await new.fetchval("SELECT count(*) FROM checkpoints WHERE name = $1", RELAY) == 0
        stale = await new.fetchval(
            "SELECT count(*) FROM webhook_deliveries d JOIN events e ON e.id = d.event_id "
            "WHERE d.log_tx <> e.tx_id"
        )
        assert stale == 0 and await new.fetchval("SELECT count(*) FROM webhook_deliveries") > 0
    finally:
        await new.close()
    assert "ok:" in await deployx("audit", "verify", database_url=new_url)

    async with running_stack(new_url, nats_url) as stack, relay(stack.pool, nats_url):
        admin = Client(stack.session, stack.base_url, facts["token"])  # the old server's token
        status, hooks = await admin.get("/api/webhooks")
        assert status == 200 and len(hooks["items"]) == 1, hooks
        # The same request with the same Idempotency-Key gets the first answer, and does not
        # act again.
        keyed = {"Idempotency-Key": "create-once"}
        again = await admin.post(TASKS, command_task(name="kept"), headers=keyed)
        assert again == (201, facts["task"])
        status, group = await admin.post(GROUPS, {"name": "after", "device_ids": []})
        assert status == 201 and group["id"] > max(facts["groups"]), group
        assert group["id"] > old_group_seq
        # Written after the restore: read back at once (the projector follows the new tx_ids).
        status, task = await admin.post(TASKS, command_task(name="after the restore"))
        assert status == 201, task
        assert (await admin.get(f"{TASKS}/{task['id']}"))[1]["name"] == "after the restore"
        await append(stack.pool, "device-after", "devices", registered("after"), **_ANY)

        await until(lambda: relay_caught_up(stack.pool), 30, "the relay to publish everything")
        await until(lambda: _fetch(stack.pool, _PROJECTED), 30, "the projections to catch up")
        newer = await stack.pool.fetchval(
            "SELECT min(tx_id)::text::bigint FROM events WHERE position > $1",
            max(row["position"] for row in rows),
        )
        assert newer > restored_max
        # Every event of the log is in the stream once: the restored ones the old relay had
        # published were dropped as duplicates (same Nats-Msg-Id within the window).
        await assert_stream_matches_log(stack.pool, nats_url)
        async with stack.pool.acquire() as sealer:
            assert await seal_all_visible(sealer) > 0
    assert "ok:" in await deployx("audit", "verify", database_url=new_url)
    reader = await asyncpg.connect(new_url)
    try:
        live = await read_tables(reader)
        await rebuild(new_url)
        assert await read_tables(reader) == live
    finally:
        await reader.close()
    print(f"\nrestored {end.rows['events']} events in {end.runs} runs", file=sys.stderr)


async def _fetch(pool: asyncpg.Pool, sql: str) -> bool:
    return bool(await pool.fetchval(sql))


async def test_restore_and_backup_bring_up_a_data_dirs_own_postgresql(
    database_url: str, tmp_path: Path
) -> None:
    """With no DEPLOYX_DATABASE_URL and no `deployx up` running, --data-dir D means D's
    embedded PostgreSQL, started for the command: what `deployx up --data-dir D` then uses."""
    conn = await asyncpg.connect(database_url)
    try:
        await append(conn, "device-kept", "devices", registered("kept"), **_ANY)
    finally:
        await conn.close()
    first = tmp_path / "first.backup"
    await deployx("backup", "--out", str(first), database_url=database_url)
    data_dir = tmp_path / "deployx-data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYX_")}
    again = tmp_path / "again.backup"
    for command in (["restore", "--file", str(first)], ["backup", "--out", str(again)]):
        proc = await asyncio.create_subprocess_exec(
            *deployx_command(),
            *command,
            "--data-dir",
            str(data_dir),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out = (await proc.communicate())[0].decode()
        assert proc.returncode == 0, out
        assert "using the embedded PostgreSQL of" in out, out
    assert check(again)[1].rows["events"] == 1
    password = (data_dir / "postgres-password").read_text().strip()
    assert (data_dir / "postgres-password").stat().st_mode & 0o777 == 0o600
    with EmbeddedPostgres(data_dir / "postgres", password=password) as server:
        conn = await asyncpg.connect(with_database(server.dsn, "deployx"))
        try:
            assert await conn.fetchval("SELECT stream_id FROM events") == "device-kept"
        finally:
            await conn.close()
