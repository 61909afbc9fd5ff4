"""Webhook delivery: N events of the log POSTed, signed, to a receiver on 127.0.0.1.

    .venv/bin/python -m bench.webhooks [--tasks 1000] [--per-task 10] [--fail-rate 0]
                                       [--bad-endpoints] [--replicas 1]

Starts embedded PostgreSQL (fsync on) in a temporary directory, applies the schema, subscribes
a receiver in this process (aiohttp on 127.0.0.1, which checks every signature with the secret)
to TaskPaused, runs `deployx webhooks` (--replicas processes) and appends --per-task TaskPaused
events to each of --tasks task streams (append_many, one event per stream a statement, so each
task's events are in log order). Measures from the first append to the last delivery answered,
each event's latency (its receipt minus its recorded_at), and checks that every event arrived
signed, in log order per task. --fail-rate answers that share of requests with a 500 (they are
retried); --bad-endpoints adds a subscription to a port nobody listens on and one to an endpoint
that never answers: the healthy receiver's figures should not move.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from aiohttp import web

from bench.create_tasks import percentile
from bench.fire_burst import cpu_seconds
from events.task import TaskPaused
from services.domain.webhooks import WebhookSpec
from services.infra import webhook_store
from services.infra.db import ensure_database, migrate
from services.infra.embedded import free_port
from services.infra.embedded_postgres import EmbeddedPostgres, child_pids
from services.infra.store import StreamAppend, append_many, new_event_id

SECRET = "bench-secret-0123456789"


class Receiver:
    """Answers 200 (or, at fail_rate, 500) and records each request's arrival."""

    def __init__(self, fail_rate: float, hang: bool = False) -> None:
        self.fail_rate, self.hang = fail_rate, hang
        self.arrived: dict[str, float] = {}  # delivery id -> time of its 200
        self.order: list[tuple[str, int]] = []  # (task, position) in order of 200s
        self.requests = self.bad_signatures = self.duplicates = 0
        self.done = asyncio.Event()
        self.expected = 0
        self.rng = random.Random(13)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests += 1
        if self.hang:
            await asyncio.sleep(3600)
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        if request.headers.get("X-DeployX-Signature") != f"sha256={digest}":
            self.bad_signatures += 1
        if self.rng.random() < self.fail_rate:
            return web.Response(status=500)
        delivery = request.headers["X-DeployX-Delivery"]
        if delivery in self.arrived:
            self.duplicates += 1
        else:
            self.arrived[delivery] = time.time()
            envelope = json.loads(body)
            self.order.append((envelope["stream_id"], envelope["position"]))
            if len(self.arrived) >= self.expected:
                self.done.set()
        return web.Response(status=200)


async def serve(receiver: Receiver) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/{name}", receiver.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/hook"


async def run(database_url: str, args: argparse.Namespace) -> dict[str, object]:
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=4)
    receiver = Receiver(args.fail_rate)
    receiver.expected = args.tasks * args.per_task
    runner, url = await serve(receiver)
    extra = []
    if args.bad_endpoints:
        slow = Receiver(0.0, hang=True)
        extra.append(await serve(slow))
        urls = [extra[0][1].replace("/hook", "/hangs"), f"http://127.0.0.1:{free_port()}/nobody"]
    else:
        urls = []
    for target in [url, *urls]:
        spec = WebhookSpec(url=target, event_types=["TaskPaused"], secret=SECRET, task_id=None)
        await webhook_store.create(pool, spec, "bench")
    await asyncio.sleep(2.0)  # the senders are up and listening before the first event
    streams = [str(uuid.uuid4()) for _ in range(args.tasks)]
    started = time.time()
    for version in range(args.per_task):
        now = datetime.now(UTC)
        items = [
            StreamAppend(
                stream_id=stream,
                category="command",
                expected_version=version,
                event=TaskPaused(task_id=stream, paused_at=now),
                event_id=new_event_id(),
            )
            for stream in streams
        ]
        for first in range(0, len(items), 1000):
            await append_many(pool, items[first : first + 1000], {"user": "bench"})
    written = time.time()
    await asyncio.wait_for(receiver.done.wait(), timeout=600)
    finished = time.time()
    recorded = {
        row["id"]: row["at"]
        for row in await pool.fetch(
            "SELECT id::text, extract(epoch FROM recorded_at)::float8 AS at FROM events"
        )
    }
    # What each subscription cost: the healthy one's tries, and the bad endpoints' (which rest
    # between failed rounds) until the healthy one was done.
    tries = {
        ("healthy" if row["url"] == url else row["url"].rsplit("/", 1)[-1]): row["n"]
        for row in await pool.fetch(
            "SELECT w.url, count(*) AS n FROM webhook_attempts a "
            "JOIN webhooks w ON w.id = a.webhook_id GROUP BY w.url"
        )
    }
    for each in (runner, *(r for r, _ in extra)):
        await each.cleanup()
    await pool.close()
    lags = [arrived - recorded[delivery] for delivery, arrived in receiver.arrived.items()]
    by_task: dict[str, list[int]] = {}
    for stream, position in receiver.order:
        by_task.setdefault(stream, []).append(position)
    return {
        "events": receiver.expected,
        "write_s": written - started,
        "last_s": finished - started,
        "per_s": receiver.expected / (finished - started),
        "p50_ms": percentile(lags, 0.5) * 1000,
        "p99_ms": percentile(lags, 0.99) * 1000,
        "max_ms": max(lags) * 1000,
        "requests": receiver.requests,
        "duplicates": receiver.duplicates,
        "bad_signatures": receiver.bad_signatures,
        "in_order": all(p == sorted(p) for p in by_task.values()),
        "attempts": tries,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--per-task", type=int, default=10)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--bad-endpoints", action="store_true")
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="deployx-webhooks-"))
    try:
        with EmbeddedPostgres(tmp / "postgres", fsync=True) as postgres:
            assert postgres.pid is not None
            database_url = postgres.dsn.rsplit("/", 1)[0] + "/deployx"

            async def prepare() -> None:
                await ensure_database(database_url)
                await migrate(database_url)

            asyncio.run(prepare())
            env = os.environ | {"DEPLOYX_DATABASE_URL": database_url, "DEPLOYX_LOG_FORMAT": "json"}
            deployx = str(Path(sys.executable).with_name("deployx"))
            procs = []
            for number in range(args.replicas):
                with (tmp / f"webhooks-{number}.log").open("wb") as log:
                    procs.append(
                        subprocess.Popen([deployx, "webhooks"], env=env, stdout=log, stderr=log)
                    )
            postgres_pids = [postgres.pid, *child_pids(postgres.pid)]
            before = sum(cpu_seconds(pid) for pid in postgres_pids)
            try:
                result = asyncio.run(run(database_url, args))
                cpu = {
                    "webhooks": sum(cpu_seconds(proc.pid) for proc in procs),
                    "postgres": sum(
                        cpu_seconds(pid) for pid in [postgres.pid, *child_pids(postgres.pid)]
                    )
                    - before,
                    "this process": cpu_seconds(os.getpid()),
                }
            finally:
                for proc in procs:
                    proc.terminate()
                for proc in procs:
                    proc.wait(30)
            result["cpu_seconds"] = {name: round(value, 2) for name, value in cpu.items()}
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
