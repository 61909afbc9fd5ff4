"""Read pages at scale: task list, search, filters, stats and executions with 100k tasks, 1M runs.

    .venv/bin/python -m bench.scale_queries [--tasks 100000] [--executions 1000000] [--rounds 200]

Starts `deployx up --agents 0` (embedded PostgreSQL and NATS) in a temporary directory, fills
the read tables directly with generated rows (`INSERT ... SELECT generate_series`, no events:
this measures the queries the API serves, not the projector; the log is empty and the projector
idle), runs VACUUM ANALYZE as autovacuum would, and times each page over HTTP, one request at a
time, as an admin and as an operator who owns a tenth of the tasks. Prints the median, p99 and
max of each page with the total it answered (the totals must not change with the queries).
`--data-dir DIR` keeps the stack's data in DIR and fills it only the first time.
`--churn 0.05` then updates that share of the tasks (as runs do: each moves its task's
next_run_time) right before the pages, with no vacuum after: the pages those rows are on are no
longer all-visible, as between two autovacuums of a busy system, so a walk along an index
fetches the heap.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg

from bench.create_tasks import percentile, start_stack, wait_ready
from services.infra.auth import create_token
from services.infra.embedded import free_port

OPERATOR = "ops-0"
USERS = 10  # tasks are spread over ops-0 ... ops-9

_TASKS = """
INSERT INTO tasks (id, version, user_id, name, description, task_type, status,
    recurrence_type, recurrence_config, next_run_time, last_run_time, last_execution_status,
    execution_count, device_ids, task_payload, created_at, updated_at)
SELECT md5('task' || n)::uuid, 1, 'ops-' || (n % $2),
    (ARRAY['nightly', 'weekly', 'hourly', 'manual', 'urgent'])[1 + n % 5] || ' ' ||
        (ARRAY['backup', 'apt update', 'log rotate', 'nginx deploy', 'disk check',
               'cert renew', 'db vacuum'])[1 + (n / 5) % 7] || ' ' || lpad(n::text, 6, '0'),
    'runs on the ' || (ARRAY['web', 'db', 'cache', 'edge'])[1 + n % 4] || ' fleet, ticket '
        || md5(n::text),
    (ARRAY['command', 'software_deployment', 'file_deployment'])[1 + n % 3],
    (ARRAY['pending', 'pending', 'pending', 'running', 'completed', 'failed', 'paused'])
        [1 + (n / 3) % 7],
    'daily', '{"time": "03:00", "timezone": "UTC"}',
    now() + interval '100 years' + interval '1 minute' * (n % 1440), now() - interval '1 hour',
    'success',
    10, ARRAY['dev-' || (n % 1000)], '{"command_payload": {"command": "true"}}',
    now() - interval '1 second' * (($1 - n) * 60), now()
FROM generate_series(1, $1) AS n
"""

_EXECUTIONS = """
INSERT INTO executions (id, task_id, task_type, trigger, scheduled_for, started_at,
    completed_at, status, devices_targeted, devices_succeeded, devices_failed, requested_by)
SELECT md5('execution' || n)::uuid, md5('task' || (1 + n % $2))::uuid,
    (ARRAY['command', 'software_deployment', 'file_deployment'])[1 + (1 + n % $2) % 3],
    CASE WHEN n % 50 = 0 THEN 'rerun' WHEN n % 5 = 1 THEN 'manual' ELSE 'schedule' END,
    now() - interval '1 second' * (($1 - n) * 5),
    now() - interval '1 second' * (($1 - n) * 5),
    now() - interval '1 second' * (($1 - n) * 5 - 2),
    CASE WHEN n = $1 THEN 'running' WHEN n % 10 = 0 THEN 'failed' ELSE 'success' END,
    1, CASE WHEN n % 10 = 0 THEN 0 ELSE 1 END, CASE WHEN n % 10 = 0 THEN 1 ELSE 0 END,
    CASE WHEN n % 50 = 0 THEN 'ops-' || ((1 + n % $2) % $3) END
FROM generate_series(1, $1) AS n
"""

_RESULTS = """
INSERT INTO execution_results (execution_id, device_id, status, exit_code, stdout,
    recorded_at)
SELECT id, 'dev-' || (abs(hashtext(id::text)) % 1000),
    CASE WHEN status = 'failed' THEN 'failed' ELSE 'success' END, 0, 'ok', completed_at
FROM executions WHERE status <> 'running'
"""

_HOURLY = """
INSERT INTO execution_stats_hourly (task_id, hour, succeeded, failed)
SELECT task_id, date_trunc('hour', completed_at), count(*) FILTER (WHERE status = 'success'),
    count(*) FILTER (WHERE status = 'failed')
FROM executions WHERE status IN ('success', 'failed') GROUP BY 1, 2
"""


# The generated tasks have no events, so the ticker can never fire one: each of its appends
# loses (no stream at that version) and it retries every 50 ms, deciding up to 50,000 tasks a
# pass in 2,000-task pages that each hold the API's event loop for 30-70 ms. _TASKS puts them
# all 100 years ahead; this moves those of a data directory filled before it did.
_NOT_DUE = """
UPDATE tasks SET next_run_time = next_run_time + interval '100 years'
WHERE next_run_time < now() + interval '50 years'
"""
_CHURN = "UPDATE tasks SET next_run_time = next_run_time + interval '1 second' WHERE random() < $1"


async def fill(conn: asyncpg.Connection, tasks: int, executions: int) -> dict[str, float]:
    """Generates the rows; returns the seconds each table took."""
    took: dict[str, float] = {}
    for name, sql, args in (
        ("tasks", _TASKS, (tasks, USERS)),
        ("executions", _EXECUTIONS, (executions, tasks, USERS)),
        ("execution_results", _RESULTS, ()),
        ("execution_stats_hourly", _HOURLY, ()),
    ):
        started = time.perf_counter()
        await conn.execute(sql, *args)
        took[name] = time.perf_counter() - started
    started = time.perf_counter()
    await conn.execute("VACUUM ANALYZE")
    took["vacuum analyze"] = time.perf_counter() - started
    return took


def pages(task_id: str, tasks: int, executions: int) -> list[tuple[str, str, str]]:
    """(who, label, path) of every page measured."""
    deep_tasks, deep_runs = tasks * 9 // 10, executions * 9 // 10
    t, e = "/api/schedule/tasks", "/api/executions"
    return [
        # The floor: an authenticated request that reads nothing (no device, no group).
        ("admin", "floor: GET /api/groups (none)", "/api/groups"),
        ("admin", "tasks, first page", f"{t}?limit=50"),
        ("admin", f"tasks, offset {deep_tasks:,}", f"{t}?limit=50&offset={deep_tasks}"),
        ("admin", f"tasks, offset {tasks // 2:,} (middle)", f"{t}?limit=50&offset={tasks // 2}"),
        ("admin", "tasks, status=paused", f"{t}?limit=50&status=paused"),
        ("admin", "tasks, status=paused, deep", f"{t}?limit=50&status=paused&offset=14000"),
        ("admin", "tasks, task_type=file_deployment", f"{t}?limit=50&task_type=file_deployment"),
        ("admin", "tasks, status and task_type", f"{t}?limit=50&status=failed&task_type=command"),
        ("admin", "tasks, q rare (1 match)", f"{t}?limit=50&q=042424"),
        ("admin", "tasks, q narrow (1/35)", f"{t}?limit=50&q=nightly cert renew"),
        ("admin", "tasks, q broad (1/7)", f"{t}?limit=50&q=nginx"),
        ("admin", "tasks, q + status", f"{t}?limit=50&q=backup&status=failed"),
        ("operator", "tasks, own, first page", f"{t}?limit=50"),
        ("operator", "tasks, own, last page", f"{t}?limit=50&offset={tasks // USERS - 50}"),
        ("operator", "tasks, own, q", f"{t}?limit=50&q=db vacuum"),
        ("admin", "stats", "/api/schedule/stats"),
        ("operator", "stats, own", "/api/schedule/stats"),
        ("admin", "executions, first page", f"{e}?limit=50"),
        ("admin", f"executions, offset {deep_runs:,}", f"{e}?limit=50&offset={deep_runs}"),
        (
            "admin",
            f"executions, offset {executions // 2:,} (middle)",
            f"{e}?limit=50&offset={executions // 2}",
        ),
        ("admin", "executions, status=failed", f"{e}?limit=50&status=failed"),
        (
            "admin",
            "executions, status=success, middle",
            f"{e}?limit=50&status=success&offset={executions * 9 // 20}",
        ),
        ("admin", "executions, trigger=manual", f"{e}?limit=50&trigger=manual"),
        ("admin", "executions, device_id", f"{e}?limit=50&device_id=dev-7"),
        ("admin", "executions, task_id", f"{e}?limit=50&task_id={task_id}"),
        ("operator", "executions, own", f"{e}?limit=50"),
        ("operator", "executions, own, deep", f"{e}?limit=50&offset={executions // USERS - 50}"),
        ("admin", "one task's executions", f"{t}/{task_id}/executions?limit=50"),
    ]


async def measure(
    session: aiohttp.ClientSession, url: str, token: str, rounds: int
) -> tuple[list[float], int | None]:
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    total: int | None = None
    for _ in range(rounds):
        started = time.perf_counter()
        async with session.get(url, headers=headers) as response:
            body = await response.json()
            if response.status != 200:
                raise RuntimeError(f"{url}: {response.status} {body}")
        latencies.append(time.perf_counter() - started)
        if isinstance(body, dict):
            total = body.get("total", body.get("total_tasks"))
    return latencies, total


async def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--churn", type=float, default=0.0)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="deployx-bench-") as tmp:
        data_dir = args.data_dir or Path(tmp)
        stack = start_stack(data_dir, port)
        try:
            base = f"http://127.0.0.1:{port}"
            admin = await wait_ready(base, data_dir / "admin-token")
            env = dict(
                line.split("=", 1)
                for line in (data_dir / "deployx.env").read_text().splitlines()
                if "=" in line
            )
            conn = await asyncpg.connect(env["DEPLOYX_DATABASE_URL"])
            try:
                filled = await conn.fetchval("SELECT count(*) FROM tasks")
                took = {} if filled else await fill(conn, args.tasks, args.executions)
                if await conn.execute(_NOT_DUE) != "UPDATE 0":
                    await conn.execute("VACUUM ANALYZE tasks")
                churned = await conn.execute(_CHURN, args.churn) if args.churn else ""
                operator = await create_token(conn, OPERATOR, "operator")
                task_id = await conn.fetchval("SELECT md5('task' || 7)::uuid::text")
            finally:
                await conn.close()
            print(
                f"filled {args.tasks:,} tasks and {args.executions:,} executions: "
                + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in took.items())
                + (f"; churn: {churned.split()[-1]} tasks updated" if churned else "")
            )
            tokens = {"admin": admin, "operator": operator}
            async with aiohttp.ClientSession() as session:
                print(
                    f"{'page':<44} {'who':<9} {'total':>9} {'p50 ms':>7} {'p99 ms':>7} max ms",
                    flush=True,
                )
                for who, label, path in pages(task_id, args.tasks, args.executions):
                    await measure(session, base + path, tokens[who], 5)  # warm-up
                    latencies, total = await measure(session, base + path, tokens[who], args.rounds)
                    ms = [x * 1000 for x in latencies]
                    print(
                        f"{label:<44} {who:<9} {total if total is not None else '':>9} "
                        f"{statistics.median(ms):7.1f} {percentile(ms, 0.99):7.1f} {max(ms):6.1f}",
                        flush=True,
                    )
        finally:
            stack.send_signal(signal.SIGINT)
            stack.wait(60)


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
