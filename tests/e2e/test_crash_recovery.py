"""Crashes mid-burst: kill -9 the ticker and the relay, and still every task fires exactly once
and every event reaches JetStream exactly once (DESIGN.md problems 1, 3 and 5)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from services.domain.task import CreateTask
from services.domain.task_spec import TaskInput
from services.engine.handler import TASKS, handle
from services.engine.relay import CHECKPOINT, STREAM
from services.infra.bus import NATS_UNAVAILABLE
from tests.e2e.leads import measured_lead, never_due, seconds_until
from tests.e2e.processes import ServiceProcess, Services, wait_until

pytestmark = pytest.mark.e2e

BURST = 400
BURST_WINDOW = timedelta(seconds=3)
BURST_LEAD = timedelta(seconds=2)
# Kill while the burst is firing: after a quarter of it, well before its end.
KILL_AFTER = BURST // 4
RECOVERY_TIMEOUT = 60.0
DUE_SUBJECT = "deployx.events.command.TaskDue"

_TASK_DUE_COUNTS = """
SELECT data ->> 'task_id' AS task_id, count(*) AS n FROM events
WHERE type = 'TaskDue' GROUP BY 1
"""
# Whether the relay's checkpoint is at or past the last event of the log, in log order.
_RELAY_CAUGHT_UP = """
SELECT coalesce((
    SELECT (c.tx_id, c.position) >= (e.tx_id, e.position)
    FROM checkpoints c,
         (SELECT tx_id, position FROM events ORDER BY tx_id DESC, position DESC LIMIT 1) e
    WHERE c.name = $1
), false)
"""
# How many events of the log the relay's checkpoint covers.
_CHECKPOINTED = """
SELECT count(*) FROM events e, checkpoints c
WHERE c.name = $1 AND (e.tx_id, e.position) <= (c.tx_id, c.position)
"""
_EXPECTED = ["TaskCreated", "TaskDue"]
_envelope = msgspec.json.Decoder(dict[str, Any])
# One message of the stream: its subject, its Nats-Msg-Id header and its decoded envelope.
Message = tuple[str, str | None, dict[str, Any]]


def command_task(run_at: datetime) -> TaskInput:
    return msgspec.convert(
        {
            "name": f"crash-test {run_at.isoformat()}",
            "task_type": "command",
            "recurrence_type": "once",
            "recurrence_config": {"run_at": run_at.isoformat(), "timezone": "UTC"},
            "device_ids": ["crash-test-device"],
            "task_payload": {"command_payload": {"command": "true"}},
        },
        TaskInput,
    )


async def create_tasks(pool: asyncpg.Pool, run_ats: list[datetime], writers: int = 10) -> list[str]:
    """Creates one once-task per run_at through the domain handler, `writers` at a time."""
    ids = [str(uuid.uuid4()) for _ in run_ats]
    gate = asyncio.Semaphore(writers)

    async def create(task_id: str, run_at: datetime) -> None:
        command = CreateTask(user_id="crash-test", task=command_task(run_at), now=datetime.now(UTC))
        async with gate:
            await handle(
                pool, TASKS, task_id, command, metadata={"user": "crash-test"}, new_stream=True
            )

    await asyncio.gather(*(create(task_id, at) for task_id, at in zip(ids, run_ats, strict=True)))
    return ids


async def due_count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM events WHERE type = 'TaskDue'"))


async def relay_caught_up(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval(_RELAY_CAUGHT_UP, CHECKPOINT))


async def stream_count(nats_url: str) -> int:
    """How many messages the stream holds (0 before the relay made it)."""
    nc = await nats.connect(nats_url)
    try:
        return (await nc.jetstream().stream_info(STREAM)).state.messages
    except NotFoundError:
        return 0
    finally:
        await nc.close()


async def stream_messages(nats_url: str) -> tuple[int, list[Message]]:
    """The stream's message count and every message in it as (subject, Nats-Msg-Id, envelope),
    read with an ephemeral consumer from the first message.

    Right after a cluster restarts, a new consumer may answer 503 until its leader is elected:
    the whole read is then tried again, for up to 30 s.
    """
    for attempt in range(30):
        try:
            return await _read_stream(nats_url)
        except NATS_UNAVAILABLE:
            if attempt == 29:
                raise
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


async def _read_stream(nats_url: str) -> tuple[int, list[Message]]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        total = (await js.stream_info(STREAM)).state.messages
        sub = await js.pull_subscribe(
            "deployx.events.>",
            stream=STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.NONE,
                deliver_policy=DeliverPolicy.ALL,
                inactive_threshold=30.0,
            ),
        )
        messages: list[Message] = []
        while len(messages) < total:
            for msg in await sub.fetch(batch=min(500, total - len(messages)), timeout=5.0):
                msg_id = (msg.headers or {}).get("Nats-Msg-Id")
                messages.append((msg.subject, msg_id, _envelope.decode(msg.data)))
        await sub.unsubscribe()
        return total, messages
    finally:
        await nc.close()


async def assert_stream_matches_log(pool: asyncpg.Pool, nats_url: str) -> list[Message]:
    """Every event of the log is in the stream exactly once, under its own id; returns the
    messages in stream order."""
    log_ids = {row["id"] for row in await pool.fetch("SELECT id::text FROM events")}
    total, messages = await stream_messages(nats_url)
    assert total == len(log_ids), f"{total} messages in {STREAM}, {len(log_ids)} events in the log"
    msg_ids = Counter(msg_id for _, msg_id, _ in messages)
    repeated = {msg_id: n for msg_id, n in msg_ids.items() if n > 1}
    assert not repeated, f"events published more than once: {repeated}"
    assert set(msg_ids) == log_ids, (
        f"{len(log_ids - set(msg_ids))} events of the log missing from the stream, "
        f"{len(set(msg_ids) - log_ids)} messages that are no event of the log"
    )
    assert all(envelope["id"] == msg_id for _, msg_id, envelope in messages)
    return messages


async def test_ticker_and_relay_killed_mid_burst_fire_every_task_once(
    services: Services, pool: asyncpg.Pool, nats_url: str
) -> None:
    projector = services.start("projector", "projector")
    ticker = services.start("ticker", "ticker")
    relay = services.start("relay", "relay")
    await projector.wait_for_log("projector_started")
    await ticker.wait_for_log("ticker_started")
    await relay.wait_for_log("relay_leading")

    lead = await measured_lead(
        lambda n: create_tasks(pool, [never_due()] * n), BURST, floor=BURST_LEAD
    )
    begin = datetime.now(UTC) + lead
    step = BURST_WINDOW / BURST
    started = time.monotonic()
    burst = [begin + i * step for i in range(BURST)]
    task_ids = await create_tasks(pool, burst)
    run_ats = dict(zip(task_ids, burst, strict=True))
    created_in = time.monotonic() - started
    assert datetime.now(UTC) < begin, f"creating {BURST} tasks took {created_in:.1f} s"

    watched = [projector, ticker, relay]
    await wait_until(
        lambda: _at_least(due_count(pool), KILL_AFTER),
        15.0 + seconds_until(begin),
        f"{KILL_AFTER} TaskDue",
        watched,
    )
    ticker.kill9()
    relay.kill9()
    killed_at = time.monotonic()
    fired_at_kill = await due_count(pool)
    assert fired_at_kill < BURST, "the burst was over before the kill: nothing was recovered"
    published_at_kill = await stream_count(nats_url)
    checkpointed_at_kill = await pool.fetchval(_CHECKPOINTED, CHECKPOINT)

    # Two tickers come back, racing for the same due tasks: still one TaskDue each.
    ticker.start()
    second_ticker = services.start("ticker-b", "ticker")
    relay.start()
    watched = [projector, ticker, second_ticker, relay]
    await ticker.wait_for_log("ticker_started")
    await second_ticker.wait_for_log("ticker_started")
    await relay.wait_for_log("relay_leading")
    fired_at_restart = await due_count(pool)
    fired_in = await wait_until(
        lambda: _at_least(due_count(pool), BURST),
        RECOVERY_TIMEOUT,
        f"every one of {BURST} tasks to have its TaskDue",
        watched,
        explain=lambda: firing_state(pool, run_ats),
    )
    all_fired = time.monotonic() - killed_at
    await wait_until(
        lambda: relay_caught_up(pool), RECOVERY_TIMEOUT, "the relay to pass the log", watched
    )
    relayed = time.monotonic() - killed_at

    counts = {row["task_id"]: row["n"] for row in await pool.fetch(_TASK_DUE_COUNTS)}
    twice = {task_id: n for task_id, n in counts.items() if n != 1}
    assert not twice, f"tasks that fired more than once: {twice}"
    assert set(counts) == set(task_ids), f"{len(set(task_ids) - set(counts))} tasks never fired"
    others = await pool.fetchval("SELECT count(*) FROM events WHERE type <> ALL($1)", _EXPECTED)
    assert others == 0, "events other than TaskCreated and TaskDue were recorded"
    lateness = await pool.fetchval(
        "SELECT max((data ->> 'lateness_seconds')::float) FROM events WHERE type = 'TaskDue'"
    )

    messages = await assert_stream_matches_log(pool, nats_url)
    due_on_stream = Counter(
        envelope["data"]["task_id"] for subject, _, envelope in messages if subject == DUE_SUBJECT
    )
    assert set(due_on_stream) == set(task_ids), "tasks whose TaskDue is not on the stream"
    assert set(due_on_stream.values()) == {1}, "a TaskDue is on the stream more than once"

    assert not services.errors(), "\n".join(services.errors())
    lost_races = sum(
        line.get("lost_races", 0) for t in (ticker, second_ticker) for line in t.log_lines()
    )
    print(
        f"\ncreated {BURST} tasks in {created_in:.2f} s; {fired_at_kill} fired before the kill, "
        f"{fired_at_restart} once the new ticker and relay were up; the rest fired "
        f"{fired_in:.2f} s later; all fired {all_fired:.2f} s and all relayed {relayed:.2f} s "
        f"after the kill; worst lateness {lateness:.2f} s; at the kill the relay had "
        f"published {published_at_kill} messages and checkpointed {checkpointed_at_kill} events; "
        f"the two new tickers lost {lost_races} races"
    )


_UNFIRED = """
SELECT x.id::text AS task_id, t.version, t.status, t.next_run_time,
    (SELECT max(e.version) FROM events e WHERE e.stream_id = x.id::text) AS log_version
FROM unnest($1::uuid[]) AS x(id) LEFT JOIN tasks t ON t.id = x.id
WHERE NOT EXISTS (
    SELECT 1 FROM events e WHERE e.stream_id = x.id::text AND e.type = 'TaskDue'
)
ORDER BY t.next_run_time NULLS FIRST
"""
_LOG_HEAD = """
(SELECT 'log head' AS name, tx_id::text, position FROM events
 ORDER BY events.tx_id DESC, events.position DESC LIMIT 1)
UNION ALL SELECT name, tx_id::text, position FROM checkpoints
UNION ALL SELECT 'snapshot xmin', pg_snapshot_xmin(pg_current_snapshot())::text, NULL
"""
_ACTIVITY = """
SELECT pid, application_name, state, wait_event_type, wait_event, backend_xid::text,
    now() - xact_start AS in_transaction, left(query, 100) AS query
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'
"""
_WAITING_LOCKS = """
SELECT pid, locktype, mode, relation::regclass::text AS relation, transactionid::text
FROM pg_locks WHERE NOT granted
"""


async def firing_state(pool: asyncpg.Pool, run_ats: dict[str, datetime]) -> str:
    """Why tasks have not fired: each unfired task's row in the tasks read table against its
    stream in the log, where the projections stand against the log, and what the database's
    sessions are doing (a lock wait, a transaction left open)."""
    lines = [f"at {datetime.now(UTC).isoformat()}, the burst ran to {max(run_ats.values())}:"]
    unfired = await pool.fetch(_UNFIRED, list(run_ats))
    lines.append(f"{len(unfired)} tasks without a TaskDue (task, run_at, tasks row, log version):")
    lines += [
        f"  {row['task_id']} run_at {run_ats[row['task_id']].isoformat()} "
        f"next_run_time {row['next_run_time']} version {row['version']} status {row['status']} "
        f"log version {row['log_version']}"
        for row in unfired[:20]
    ]
    lines.append("projections against the log (tx_id, position):")
    lines += [
        f"  {row['name']}: {row['tx_id']}, {row['position']}" for row in await pool.fetch(_LOG_HEAD)
    ]
    activity = await pool.fetch(_ACTIVITY)
    lines.append(f"{len(activity)} busy database sessions:")
    lines += [f"  {dict(row)}" for row in activity]
    locks = await pool.fetch(_WAITING_LOCKS)
    lines.append(f"{len(locks)} lock waits:")
    lines += [f"  {dict(row)}" for row in locks]
    return "\n".join(lines)


async def _at_least(count: Awaitable[Any], wanted: int) -> bool:
    return int(await count) >= wanted


def _leader(relays: list[ServiceProcess]) -> ServiceProcess:
    leading = [relay for relay in relays if relay.logged("relay_leading")]
    assert len(leading) == 1, f"{len(leading)} relays lead at once"
    return leading[0]


async def test_two_relays_publish_every_event_once(
    services: Services, pool: asyncpg.Pool, nats_url: str
) -> None:
    relays = [services.start("relay-a", "relay"), services.start("relay-b", "relay")]
    for relay in relays:
        await relay.wait_for_log("relay_leading", "relay_standby")
    leader = _leader(relays)

    far = datetime.now(UTC) + timedelta(days=1)
    await create_tasks(pool, [far] * 300)
    await wait_until(lambda: relay_caught_up(pool), 30.0, "the relays to pass the log", relays)
    assert len(await assert_stream_matches_log(pool, nats_url)) == 300

    # The leader dies while writers append: the standby takes over from the checkpoint.
    writing = asyncio.create_task(create_tasks(pool, [far] * 300, writers=2))
    await wait_until(
        lambda: _at_least(pool.fetchval("SELECT count(*) FROM events"), 400),
        30.0,
        "writers to get going",
        relays,
    )
    leader.kill9()
    killed_at = time.monotonic()
    await writing
    standby = next(relay for relay in relays if relay is not leader)
    await standby.wait_for_log("relay_leading")
    await wait_until(lambda: relay_caught_up(pool), 30.0, "the standby to pass the log", [standby])
    took_over = time.monotonic() - killed_at
    assert len(await assert_stream_matches_log(pool, nats_url)) == 600

    # A relay that died after publishing but before saving its checkpoint starts again from
    # an older one: everything it sends again is inside the duplicate window and dropped.
    standby.kill9()
    await pool.execute(
        "UPDATE checkpoints SET tx_id = '0', position = 0 WHERE name = $1", CHECKPOINT
    )
    rewound = services.start("relay-c", "relay")
    await rewound.wait_for_log("relay_leading")
    await wait_until(lambda: relay_caught_up(pool), 30.0, "the relay to publish again", [rewound])
    assert len(await assert_stream_matches_log(pool, nats_url)) == 600
    assert not services.errors(), "\n".join(services.errors())
    print(f"\nthe standby relay published the rest {took_over:.2f} s after the leader's kill")
