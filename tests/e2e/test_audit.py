"""The sealed audit log (issue 13): `deployx sealer` seals every event within seconds, and
`deployx audit verify` names the first position an attacker with database access altered,
removed or reordered, bypassing the append-only triggers as such an attacker would."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import nats
import pytest

from tests.e2e.api import TASKS, create_task
from tests.e2e.processes import ServiceProcess, Services, deployx_command, wait_until
from tests.stack import Stack


async def deployx(services: Services, *args: str) -> tuple[int, str]:
    """Runs a `deployx` command as an operator would; its exit code and stdout (+ stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *deployx_command(),
        *args,
        env=services.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def some_history(stack: Stack) -> None:
    """Tasks created, paused, resumed and deleted: a dozen events of several streams."""
    admin = await stack.client("root", "admin")
    tasks = [await create_task(admin) for _ in range(4)]
    for task in tasks[:3]:
        assert (await admin.post(f"{TASKS}/{task['id']}/pause"))[0] == 200
    assert (await admin.post(f"{TASKS}/{tasks[0]['id']}/resume"))[0] == 200
    assert (await admin.delete(f"{TASKS}/{tasks[1]['id']}"))[0] == 204


async def all_sealed(pool: asyncpg.Pool, sealer: ServiceProcess) -> None:
    async def sealed() -> bool:
        counts = await pool.fetchrow(
            "SELECT (SELECT count(*) FROM events) AS events, "
            "(SELECT count(*) FROM audit_chain) AS seals"
        )
        assert counts is not None
        return bool(counts["events"] and counts["events"] == counts["seals"])

    await wait_until(sealed, 15, "every event to be sealed", [sealer])


async def positions(pool: asyncpg.Pool) -> list[int]:
    return [row["position"] for row in await pool.fetch("SELECT position FROM events ORDER BY 1")]


async def as_attacker(pool: asyncpg.Pool, *statements: str) -> None:
    """Statements run past the append-only triggers, as a superuser can."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        for statement in statements:
            await conn.execute(statement)


@pytest.fixture
async def sealed(stack: Stack, services: Services) -> ServiceProcess:
    services.env["DEPLOYX_AUDIT_ANCHOR_SECONDS"] = "0.2"
    sealer = services.start("sealer", "sealer")
    await some_history(stack)
    await all_sealed(stack.pool, sealer)
    return sealer


async def test_verify_passes_on_the_untouched_log(
    stack: Stack, services: Services, sealed: ServiceProcess
) -> None:
    code, out = await deployx(services, "audit", "verify")
    count = len(await positions(stack.pool))
    assert code == 0, out
    assert f"ok: {count} sealed events intact" in out
    assert services.errors() == [], services.tails()


async def test_an_updated_event_fails_verify_naming_its_position(
    stack: Stack, services: Services, sealed: ServiceProcess
) -> None:
    target = (await positions(stack.pool))[5]
    await as_attacker(
        stack.pool,
        f"""UPDATE events SET data = jsonb_set(data, '{{paused_at}}', '"2020-01-01T00:00:00Z"')
            WHERE position = {target}""",
    )
    code, out = await deployx(services, "audit", "verify")
    assert code == 1, out
    assert f"FAILED: position {target}: " in out and "altered" in out, out


async def test_a_deleted_event_fails_verify_naming_its_position(
    stack: Stack, services: Services, sealed: ServiceProcess
) -> None:
    target = (await positions(stack.pool))[4]
    async with stack.pool.acquire() as conn:
        # The other way past the triggers: switching them off for everyone, for a moment.
        await conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        await conn.execute("DELETE FROM events WHERE position = $1", target)
        await conn.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
    code, out = await deployx(services, "audit", "verify")
    assert code == 1, out
    assert f"FAILED: position {target}: " in out and "was removed" in out, out


async def test_two_events_swapped_in_log_order_fail_verify_naming_the_first(
    stack: Stack, services: Services, sealed: ServiceProcess
) -> None:
    first, second = (await positions(stack.pool))[2:4]
    place = await stack.pool.fetch(
        "SELECT position, tx_id::text FROM events WHERE position = ANY($1::bigint[])",
        [first, second],
    )
    tx = {row["position"]: row["tx_id"] for row in place}
    # Each row takes the other's place in log order: (tx_id, position).
    await as_attacker(
        stack.pool,
        f"UPDATE events SET position = -1, tx_id = '{tx[second]}' WHERE position = {first}",
        f"UPDATE events SET position = {first}, tx_id = '{tx[first]}' WHERE position = {second}",
        f"UPDATE events SET position = {second} WHERE position = -1",
    )
    code, out = await deployx(services, "audit", "verify")
    assert code == 1, out
    assert f"FAILED: position {first}: " in out and "reordered" in out, out


async def test_an_export_verifies_without_a_database_and_a_tampered_copy_does_not(
    stack: Stack, services: Services, sealed: ServiceProcess, tmp_path: Path
) -> None:
    log = await positions(stack.pool)
    whole, part = tmp_path / "audit.jsonl", tmp_path / "part.jsonl"
    assert (await deployx(services, "audit", "export", "--out", str(whole)))[0] == 0
    code, _ = await deployx(services, "audit", "export", "--out", str(part), "--after", str(log[3]))
    assert code == 0
    offline = services.env | {"DEPLOYX_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    for path, count in ((whole, len(log)), (part, len(log) - 4)):
        proc = await asyncio.create_subprocess_exec(
            *deployx_command(), "audit", "verify", "--file", str(path), env=offline,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        printed, _ = await proc.communicate()
        assert proc.returncode == 0, printed
        assert f"ok: {count} sealed events intact" in printed.decode()

    lines = whole.read_bytes().splitlines(keepends=True)
    record = json.loads(lines[6])
    record["event"]["metadata"]["user"] = "someone else"
    lines[6] = json.dumps(record).encode() + b"\n"
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_bytes(b"".join(lines))
    code, out = await deployx(services, "audit", "verify", "--file", str(tampered))
    assert code == 1, out
    assert f"FAILED: position {record['event']['position']}: " in out and "altered" in out, out


async def test_anchors_on_nats_catch_a_log_rewritten_with_a_recomputed_chain(
    stack: Stack, services: Services, sealed: ServiceProcess, nats_url: str
) -> None:
    client = await nats.connect(nats_url)
    anchors: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    async def keep(msg: nats.aio.msg.Msg) -> None:
        await anchors.put(json.loads(msg.data))

    await client.subscribe("deployx.audit.anchors", cb=keep)
    await stack.client("root", "admin")  # nothing sealed changes: the next anchor is the head
    anchor = await asyncio.wait_for(anchors.get(), timeout=10)
    await client.close()
    code, out = await deployx(services, "audit", "head")
    head = json.loads(out.splitlines()[0])
    assert code == 0 and head["hash"] == anchor["hash"], (out, anchor)
    assert head["position"] == anchor["position"] == (await positions(stack.pool))[-1]
    code, out = await deployx(services, "audit", "head", "--from-nats")
    assert code == 0 and json.loads(out.splitlines()[0]) == head, out

    given = f"{anchor['position']}:{anchor['hash']}"
    assert (await deployx(services, "audit", "verify", "--anchor", given))[0] == 0
    # The attacker alters an event and recomputes every seal after it: the database agrees
    # with itself, only the anchor kept elsewhere does not.
    target = (await positions(stack.pool))[2]
    await as_attacker(
        stack.pool,
        f'UPDATE events SET metadata = \'{{"user": "nobody"}}\' WHERE position = {target}',
        "DELETE FROM audit_chain",
        "DELETE FROM checkpoints WHERE name = 'audit_sealer'",
    )
    await all_sealed(stack.pool, sealed)
    code, out = await deployx(services, "audit", "verify")
    assert code == 0, out
    code, out = await deployx(services, "audit", "verify", "--anchor", given)
    assert code == 1, out
    assert f"FAILED: position {anchor['position']}: the anchor says" in out, out


async def test_the_audit_api_is_for_admins_and_filters(stack: Stack) -> None:
    await some_history(stack)
    admin = await stack.client("auditor", "admin")
    for role in ("viewer", "operator"):
        status, body = await (await stack.client(f"a-{role}", role)).get("/api/audit")
        assert status == 403, body
    status, page = await admin.get("/api/audit?limit=1000")
    assert status == 200, page
    listed = [item["position"] for item in page["items"]]
    assert listed == sorted(listed, reverse=True) and page["total"] == len(listed)
    task_id = next(i["task_id"] for i in page["items"] if i["type"] == "TaskDeleted")
    status, history = await admin.get(f"/api/audit?task_id={task_id}&user=root")
    assert [i["type"] for i in history["items"]] == ["TaskDeleted", "TaskPaused", "TaskCreated"]
    assert {i["user"] for i in history["items"]} == {"root"}
    status, paused = await admin.get("/api/audit?type=TaskPaused&limit=2")
    assert status == 200 and paused["total"] == 3 and len(paused["items"]) == 2
    newest = page["items"][0]["recorded_at"].replace("+00:00", "Z")
    status, none = await admin.get(f"/api/audit?since={newest.replace('Z', '-01:00')}")
    assert status == 200 and none["total"] == 0, none
    for query, field in (
        ("type=TaskExploded", "type"),
        ("task_id=nope", "task_id"),
        ("since=yesterday", "since"),
        ("since=2026-01-01T00:00:00", "since"),
        ("limit=0", "limit"),
    ):
        status, error = await admin.get(f"/api/audit?{query}")
        assert status == 422 and error["error"]["details"]["field"] == field, (query, error)
