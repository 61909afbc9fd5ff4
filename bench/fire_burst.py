"""Firing a burst: N one-time tasks due in the same second, until every TaskDue is on NATS.

    .venv/bin/python -m bench.fire_burst [--tasks 10000] [--singles 50] [--cluster] [--profile DIR]

Starts embedded PostgreSQL (fsync on) and NATS in a temporary directory, applies the schema and
runs `deployx projector`, `deployx ticker` and `deployx relay` as three processes. This process
subscribes to deployx.events.*.TaskDue (core NATS, the subjects the relay publishes to) and
appends the tasks' TaskCreated events straight to the log (append_many, 1,000 a statement);
each burst starts only once the tasks table shows every task, before the due second.

1. Single-task lag: --singles tasks due one at a time, 200 ms apart, on an otherwise idle system.
2. Burst: --tasks tasks due at the same whole second; times from that second to the last TaskDue
   committed in PostgreSQL and to the last one received here.
3. APScheduler 3 (BackgroundScheduler, SQLAlchemyJobStore in a second database of the same
   PostgreSQL) with the same burst as date-trigger jobs, after the DeployX services have stopped.

--cluster runs the DeployX part on a three-node NATS cluster on loopback instead (streams with 3
replicas, DEPLOYX_NATS_URL naming every node) with two processes of each service: the cost of
replication.

Needs the bench extra: pip install -e '.[bench]'. --profile DIR records each service with py-spy
during the burst (collapsed stacks, DIR/<service>.txt; speedscope and inferno read them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec
import nats
from nats.aio.msg import Msg

from bench import seal_lag
from bench.create_tasks import percentile
from events.codec import Envelope, decode_data
from events.task import TaskCreated, TaskDue
from projections import PROJECTIONS
from services.domain import task
from services.domain.task_spec import TaskInput
from services.engine.relay import CHECKPOINT as RELAY_CHECKPOINT
from services.infra.bus import servers
from services.infra.db import create_pool, ensure_database, migrate
from services.infra.embedded import log_tail
from services.infra.embedded_cluster import nats_cluster
from services.infra.embedded_nats import EmbeddedNats
from services.infra.embedded_postgres import EmbeddedPostgres, child_pids
from services.infra.store import StreamAppend, append_many, new_event_id

SERVICES = ("projector", "ticker", "relay")
# --cluster: nodes of the NATS cluster, replicas of its streams, processes of each service.
CLUSTER_NODES = 3
CLUSTER_STREAM_REPLICAS = 3
CLUSTER_SERVICE_REPLICAS = 2
SUBJECT = "deployx.events.*.TaskDue"
METADATA = {"user": "bench", "service": "fire_burst"}
CREATE_CHUNK = 1000
SINGLE_SPACING = timedelta(milliseconds=200)
# APScheduler's executor: more threads than its scheduler thread can ever keep busy here.
APS_WORKERS = 20
_envelope = msgspec.json.Decoder(Envelope)


# --- DeployX ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    task_id: str
    scheduled_for: datetime
    received_at: float  # time.time() when this process had the message

    @property
    def lag(self) -> float:
        return self.received_at - self.scheduled_for.timestamp()


class Receiver:
    """Keeps every TaskDue message with the time it arrived; decodes them only afterwards."""

    def __init__(self) -> None:
        self.raw: list[tuple[float, bytes]] = []
        self._target = 0
        self._reached = asyncio.Event()

    async def on_message(self, msg: Msg) -> None:
        self.raw.append((time.time(), msg.data))
        if len(self.raw) >= self._target:
            self._reached.set()

    async def wait_count(self, count: int, timeout: float) -> None:
        self._target = count
        self._reached.clear()
        if len(self.raw) >= count:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._reached.wait()
        except TimeoutError:
            message = f"{len(self.raw)} of {count} TaskDue on NATS after {timeout} s"
            raise TimeoutError(message) from None

    def arrivals(self, task_ids: Sequence[str]) -> list[Arrival]:
        wanted = set(task_ids)
        found: dict[str, Arrival] = {}
        for received_at, data in self.raw:
            envelope = _envelope.decode(data)
            event = decode_data(envelope.type, bytes(envelope.data))
            assert isinstance(event, TaskDue)
            if event.task_id in wanted and event.task_id not in found:
                found[event.task_id] = Arrival(event.task_id, event.scheduled_for, received_at)
        if len(found) != len(wanted):
            raise RuntimeError(f"only {len(found)} of {len(wanted)} tasks arrived on NATS")
        return list(found.values())


def created_event(task_id: str, run_at: datetime, now: datetime) -> TaskCreated:
    """The TaskCreated that POST /api/schedule/tasks would append for a one-time task."""
    spec = TaskInput(
        name=f"burst {task_id[:8]}",
        task_type="command",
        recurrence_type="once",
        recurrence_config={"run_at": run_at.isoformat(), "timezone": "UTC"},
        device_ids=["local-1"],
        task_payload={"command_payload": {"command": "true"}},
    )
    command = task.CreateTask(user_id="bench", task=spec, now=now)
    [event] = task.decide(task.TaskState(task_id=task_id), command)
    assert isinstance(event, TaskCreated)
    return event


async def create_tasks(pool: asyncpg.Pool, run_ats: Sequence[datetime]) -> list[str]:
    """Appends one TaskCreated per run_at; returns the task ids."""
    now = datetime.now(UTC)
    ids = [str(uuid.uuid4()) for _ in run_ats]
    items = [
        StreamAppend(task_id, "command", 0, created_event(task_id, run_at, now), new_event_id())
        for task_id, run_at in zip(ids, run_ats, strict=True)
    ]
    for start in range(0, len(items), CREATE_CHUNK):
        await append_many(pool, items[start : start + CREATE_CHUNK], METADATA)
    return ids


async def wait_projected(
    pool: asyncpg.Pool, task_ids: Sequence[str], before: datetime, services: Services
) -> None:
    """Until the tasks table shows every task; fails if that is not so well before `before`."""
    while True:
        shown = await pool.fetchval(
            "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND next_run_time IS NOT NULL",
            task_ids,
        )
        if shown == len(task_ids):
            return
        services.check_alive()
        if datetime.now(UTC) > before - timedelta(seconds=1):
            raise RuntimeError(
                f"only {shown} of {len(task_ids)} tasks projected 1 s before they are due: "
                "give a larger --lead"
            )
        await asyncio.sleep(0.05)


async def wait_settled(pool: asyncpg.Pool, services: Services, timeout: float = 300.0) -> None:
    """Until every projection and the relay have passed the last event of the log."""
    readers = [projection.name for projection in PROJECTIONS] + [RELAY_CHECKPOINT]
    deadline = time.monotonic() + timeout
    while True:
        behind = await pool.fetchval(
            """
            SELECT $2::int - count(*) FROM checkpoints c,
                (SELECT tx_id, position FROM events ORDER BY tx_id DESC, position DESC LIMIT 1) e
            WHERE c.name = ANY($1::text[]) AND (c.tx_id, c.position) >= (e.tx_id, e.position)
            """,
            readers,
            len(readers),
        )
        if behind == 0:
            return
        services.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{behind} of {readers} still behind the log after {timeout} s")
        await asyncio.sleep(0.05)


async def sleep_until(instant: datetime) -> None:
    await asyncio.sleep(max(0.0, (instant - datetime.now(UTC)).total_seconds()))


def whole_second_after(instant: datetime) -> datetime:
    return datetime.fromtimestamp(math.ceil(instant.timestamp()), UTC)


@dataclass(frozen=True)
class Fired:
    task_id: str
    transaction: str  # the transaction that appended the TaskDue
    lag: float  # its recorded_at - scheduled_for, seconds


@dataclass(frozen=True)
class Committed:
    """What the log holds for a set of tasks after their occurrence."""

    fired: list[Fired]  # the TaskDue events
    other: int  # RunMissed, RunSkipped: anything but TaskCreated and TaskDue

    @property
    def lags(self) -> list[float]:
        return [row.lag for row in self.fired]

    @property
    def transactions(self) -> int:
        return len({row.transaction for row in self.fired})


async def committed(pool: asyncpg.Pool, task_ids: Sequence[str]) -> Committed:
    rows = await pool.fetch(
        """
        SELECT type, stream_id, tx_id::text AS tx,
            extract(epoch FROM recorded_at - (data ->> 'scheduled_for')::timestamptz)::float8
                AS lag
        FROM events WHERE stream_id = ANY($1::text[]) AND type <> 'TaskCreated'
        """,
        task_ids,
    )
    fired = [
        Fired(row["stream_id"], row["tx"], row["lag"]) for row in rows if row["type"] == "TaskDue"
    ]
    return Committed(fired=fired, other=len(rows) - len(fired))


@dataclass
class SingleResult:
    count: int
    committed: list[float]
    received: list[float]


@dataclass
class BurstResult:
    tasks: int
    due: datetime
    create_seconds: float  # appending the TaskCreated events
    project_seconds: float  # until the tasks table showed them all
    settled_seconds: float  # due -> every projection and the relay past the last event
    log: Committed
    arrivals: list[Arrival]
    cpu: dict[str, float]

    @property
    def received(self) -> list[float]:
        return [arrival.lag for arrival in self.arrivals]


async def single_task_lag(
    pool: asyncpg.Pool, receiver: Receiver, services: Services, count: int
) -> SingleResult:
    first = whole_second_after(datetime.now(UTC) + timedelta(seconds=3))
    run_ats = [first + index * SINGLE_SPACING for index in range(count)]
    before = len(receiver.raw)
    ids = await create_tasks(pool, run_ats)
    await wait_projected(pool, ids, first, services)
    await sleep_until(run_ats[-1])
    await receiver.wait_count(before + count, timeout=30.0)
    log = await committed(pool, ids)
    await wait_settled(pool, services)
    return SingleResult(count, log.lags, [arrival.lag for arrival in receiver.arrivals(ids)])


async def burst(
    pool: asyncpg.Pool,
    receiver: Receiver,
    services: Services,
    tasks: int,
    lead: float,
    profile: Path | None,
) -> BurstResult:
    due = whole_second_after(datetime.now(UTC) + timedelta(seconds=lead))
    before = len(receiver.raw)
    started = time.perf_counter()
    ids = await create_tasks(pool, [due] * tasks)
    created = time.perf_counter()
    await wait_projected(pool, ids, due, services)
    projected = time.perf_counter()
    # Let the projector's last round and autovacuum's look at the new rows pass.
    await sleep_until(due - timedelta(seconds=1))
    with services.profiled(profile):
        cpu_before = services.cpu() | services.postgres_cpu()
        await sleep_until(due)
        await receiver.wait_count(before + tasks, timeout=120.0 + tasks / 100)
        cpu_after = services.cpu() | services.postgres_cpu()
    await wait_settled(pool, services)
    settled = time.time() - due.timestamp()
    return BurstResult(
        tasks=tasks,
        due=due,
        create_seconds=created - started,
        project_seconds=projected - created,
        settled_seconds=settled,
        log=await committed(pool, ids),
        arrivals=receiver.arrivals(ids),
        cpu={name: cpu_after[name] - cpu_before[name] for name in cpu_before},
    )


async def run_deployx(
    database_url: str, nats_url: str, services: Services, args: argparse.Namespace
) -> tuple[SingleResult, BurstResult]:
    receiver = Receiver()
    client = await nats.connect(servers(nats_url), name="fire-burst")
    pool = await create_pool(database_url, max_size=4)
    try:
        await client.subscribe(SUBJECT, cb=receiver.on_message)
        # Warm-up: one task through ticker, projector and relay proves all three are up.
        ids = await create_tasks(pool, [datetime.now(UTC) + timedelta(seconds=1)])
        await receiver.wait_count(1, timeout=60.0)
        receiver.arrivals(ids)
        single = await single_task_lag(pool, receiver, services, args.singles)
        fired = await burst(pool, receiver, services, args.tasks, args.lead, args.profile)
    finally:
        await pool.close()
        await client.drain()
    return single, fired


# --- the processes ---------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def local_ports(pid: int) -> set[int]:
    """The local TCP ports of a process's sockets (Linux /proc)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def backends_by_client(backends: Sequence[int], clients: dict[str, int]) -> dict[str, list[int]]:
    """The PostgreSQL backends of each client process, matched by the TCP port that the
    backend's process title names ("postgres: user db 127.0.0.1(54321) idle")."""
    owner = {port: name for name, pid in clients.items() for port in local_ports(pid)}
    found: dict[str, list[int]] = {name: [] for name in clients}
    for pid in backends:
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        client = re.search(rb"\((\d+)\)", title)
        if client is not None and int(client[1]) in owner:
            found[owner[int(client[1])]].append(pid)
    return found


def replica_names(name: str, replicas: int) -> list[str]:
    """`name` for a single process, else `name-1`, `name-2` ..."""
    return [name] if replicas == 1 else [f"{name}-{index}" for index in range(1, replicas + 1)]


@contextlib.contextmanager
def nats_servers(base_dir: Path, cluster: bool) -> Iterator[tuple[str, list[int]]]:
    """One nats-server, or with `cluster` a three-node cluster on loopback, stopped at the end;
    yields DEPLOYX_NATS_URL (every node, comma-separated) and the servers' process ids."""
    if not cluster:
        with EmbeddedNats(base_dir / "nats") as server:
            assert server.pid is not None
            yield server.url, [server.pid]
        return
    with nats_cluster(base_dir / "nats", CLUSTER_NODES) as nodes:
        asyncio.run(nodes.start())
        yield nodes.url, nodes.pids


def cluster_env(cluster: bool) -> dict[str, str]:
    return {"DEPLOYX_STREAM_REPLICAS": str(CLUSTER_STREAM_REPLICAS)} if cluster else {}


def setup_line(cluster: bool) -> str:
    """What --cluster changed, for the report ("" without it: the report is as it was)."""
    if not cluster:
        return ""
    return (
        f"{CLUSTER_NODES}-node NATS cluster (streams with {CLUSTER_STREAM_REPLICAS} replicas), "
        f"{CLUSTER_SERVICE_REPLICAS} replicas per service"
    )


@dataclass
class Services:
    """`deployx projector`, `ticker` and `relay`, `replicas` processes of each, logging to
    log_dir."""

    log_dir: Path
    env: dict[str, str]
    postgres_pid: int
    nats_pids: list[int]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    replicas: int = 1
    # cpu(): each PostgreSQL process's CPU seconds when last seen, and the client it serves.
    postgres_seen: dict[int, float] = field(default_factory=dict)
    backend_owner: dict[int, str] = field(default_factory=dict)

    def start(self) -> None:
        deployx = Path(sys.executable).with_name("deployx")
        for service in SERVICES:
            for name in replica_names(service, self.replicas):
                self.spawn(name, [str(deployx), service])

    def spawn(self, name: str, command: list[str]) -> None:
        with (self.log_dir / f"{name}.log").open("wb") as log:
            self.procs[name] = subprocess.Popen(
                command,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = log_tail(self.log_dir / f"{name}.log")
                raise RuntimeError(f"deployx {name} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        """SIGTERM to each (they stop cleanly on it), SIGKILL after 30 s; all reaped."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                code = proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                print(f"deployx {name} did not stop within 30 s: killed", file=sys.stderr)
                continue
            if code != 0:
                print(f"deployx {name} exited with {code}", file=sys.stderr)
        self.procs.clear()

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each service and of PostgreSQL (all its processes). One of
        PostgreSQL's processes that has exited (a connection closed, an autovacuum worker)
        still counts what it had used when last seen: a difference of two calls is not cut
        short by it."""
        seconds = {name: cpu_seconds(proc.pid) for name, proc in self.procs.items()}
        seconds["postgres"] = sum(self._postgres_seen().values())
        seconds["nats-server"] = sum(cpu_seconds(pid) for pid in self.nats_pids)
        seconds["this process"] = cpu_seconds(os.getpid())
        return seconds

    def postgres_cpu(self) -> dict[str, float]:
        """CPU seconds so far of the PostgreSQL backends serving each service and this
        process ("postgres for ticker" ...), counted as cpu() counts PostgreSQL's."""
        clients = {name: proc.pid for name, proc in self.procs.items()}
        clients["this process"] = os.getpid()
        seen = self._postgres_seen()
        for name, pids in backends_by_client(list(seen), clients).items():
            for pid in pids:
                self.backend_owner.setdefault(pid, name)
        return {
            f"postgres for {name}": sum(
                used for pid, used in seen.items() if self.backend_owner.get(pid) == name
            )
            for name in clients
        }

    def _postgres_seen(self) -> dict[int, float]:
        for pid in [self.postgres_pid, *child_pids(self.postgres_pid)]:
            self.postgres_seen[pid] = max(self.postgres_seen.get(pid, 0.0), cpu_seconds(pid))
        return self.postgres_seen

    @contextlib.contextmanager
    def profiled(self, out_dir: Path | None) -> Iterator[None]:
        """py-spy records every service while the block runs (nothing when out_dir is None)."""
        if out_dir is None:
            yield
            return
        py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        out_dir.mkdir(parents=True, exist_ok=True)
        spies = [
            subprocess.Popen(
                [
                    *(py_spy, "record", "--pid", str(proc.pid), "--rate", "250"),
                    *("--format", "raw", "--output", str(out_dir / f"{name}.txt")),
                    "--nonblocking",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, proc in self.procs.items()
        ]
        time.sleep(0.5)  # attached before the due second
        try:
            yield
        finally:
            for spy in spies:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            for spy in spies:
                spy.wait(30)


# --- APScheduler -----------------------------------------------------------------------------

# job index -> time.time() of its run, filled in by record_run on APScheduler's worker threads
_aps_runs: dict[int, float] = {}


def record_run(index: int) -> None:
    _aps_runs[index] = time.time()


@dataclass
class ApsResult:
    jobs: int
    due: datetime
    create_seconds: float
    runs: list[float]  # run time - due, seconds
    missed: int


def run_apscheduler(url: str, jobs: int, lead: float) -> ApsResult:
    from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    missed: list[str] = []

    def on_missed(event: JobExecutionEvent) -> None:
        missed.append(event.job_id)

    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=url)},
        executors={"default": ThreadPoolExecutor(APS_WORKERS)},
        # None: a job runs however late it is; so none is dropped, only delayed.
        job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
        timezone=UTC,
    )
    scheduler.add_listener(on_missed, EVENT_JOB_MISSED)
    # Paused: jobs go into the store, but none is looked at until resume().
    scheduler.start(paused=True)
    try:
        # Each add_job is its own INSERT and commit: time a few to know how long all take.
        far = datetime.now(UTC) + timedelta(days=1)
        started = time.perf_counter()
        for index in range(200):
            scheduler.add_job(record_run, "date", run_date=far, args=(-1,), id=f"probe-{index}")
        per_job = (time.perf_counter() - started) / 200
        scheduler.remove_all_jobs()
        due = whole_second_after(datetime.now(UTC) + timedelta(seconds=lead + 1.5 * jobs * per_job))
        _aps_runs.clear()
        started = time.perf_counter()
        for index in range(jobs):
            scheduler.add_job(record_run, "date", run_date=due, args=(index,), id=str(index))
        create_seconds = time.perf_counter() - started
        if datetime.now(UTC) > due - timedelta(seconds=1):
            raise RuntimeError("APScheduler jobs were still being added at the due second")
        scheduler.resume()
        deadline = time.monotonic() + lead + 300.0
        while len(_aps_runs) + len(missed) < jobs:
            if time.monotonic() > deadline:
                raise TimeoutError(f"APScheduler ran {len(_aps_runs)} of {jobs} jobs")
            time.sleep(0.05)
    finally:
        scheduler.shutdown(wait=True)
    runs = [at - due.timestamp() for at in _aps_runs.values()]
    return ApsResult(jobs, due, create_seconds, runs, len(missed))


# --- the report ------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def s(seconds: float) -> str:
    return f"{seconds:,.3f} s"


def spread(values: list[float], unit: str = "ms") -> str:
    show = ms if unit == "ms" else s
    return (
        f"p50 {show(percentile(values, 0.5))}, p99 {show(percentile(values, 0.99))}, "
        f"max {show(max(values))}"
    )


def report(single: SingleResult, fired: BurstResult, aps: ApsResult | None, setup: str = "") -> str:
    received, runs = fired.received, (aps.runs if aps is not None else [])

    def theirs(value: float | str) -> str:
        return "" if aps is None else value if isinstance(value, str) else s(value)

    rows: list[tuple[str, str, str]] = [
        ("due -> first TaskDue committed", s(min(fired.log.lags)), ""),
        ("due -> last TaskDue committed", s(max(fired.log.lags)), ""),
        ("due -> first on NATS / first job run", s(min(received)), theirs(min(runs, default=0))),
        ("due -> last on NATS / last job run", s(max(received)), theirs(max(runs, default=0))),
        ("per-task lag p50", s(percentile(received, 0.5)), theirs(_p(runs, 0.5))),
        ("per-task lag p99", s(percentile(received, 0.99)), theirs(_p(runs, 0.99))),
        ("due -> read tables and relay caught up", s(fired.settled_seconds), ""),
        (
            "fired / missed",
            f"{len(fired.log.fired):,} / {fired.log.other:,}",
            theirs(f"{len(runs):,} / {aps.missed:,}" if aps else ""),
        ),
    ]
    width = max(len(row[0]) for row in rows)
    lines = [
        f"Fire burst: {fired.tasks:,} one-time tasks due at {fired.due:%H:%M:%S} UTC "
        f"(PostgreSQL fsync on, {os.cpu_count()} cores)",
        *([f"  {setup}"] if setup else []),
        f"  created in {s(fired.create_seconds)} (append_many), in the tasks table "
        f"{s(fired.project_seconds)} later; TaskDue appended in {fired.log.transactions} "
        "transaction(s)",
        "",
        f"  {'':<{width}}  {'DeployX':>12}  {'APScheduler' if aps else '':>12}",
    ]
    lines += [f"  {name:<{width}}  {ours:>12}  {other:>12}" for name, ours, other in rows]
    if aps is not None:
        ratio = max(received) / max(runs)
        lines.append(
            f"\n  DeployX / APScheduler (due -> last on NATS / due -> last job run): {ratio:.2f}"
            f"\n  APScheduler: {aps.jobs:,} jobs added in {s(aps.create_seconds)} "
            f"(SQLAlchemyJobStore, BackgroundScheduler, {APS_WORKERS} worker threads)"
        )
    lines.append(
        "\n  per TaskDue append transaction, from due: last row inserted, first / last on NATS"
    )
    lines += [
        f"    {count:>6,} TaskDue: {s(inserted)}, {s(first)} / {s(last)}"
        for count, inserted, first, last in by_transaction(fired)
    ]
    cpu = ", ".join(f"{name} {seconds:.2f}" for name, seconds in fired.cpu.items())
    lines.append(f"\n  CPU seconds, due -> last on NATS: {cpu}")
    lines.append(
        f"\nSingle-task lag: {single.count} tasks due one at a time, "
        f"{SINGLE_SPACING.total_seconds() * 1000:.0f} ms apart"
        f"\n  committed in PostgreSQL: {spread(single.committed)}"
        f"\n  received on NATS:        {spread(single.received)}"
    )
    return "\n".join(lines)


def by_transaction(fired: BurstResult) -> list[tuple[int, float, float, float]]:
    """Per transaction that appended TaskDue, in commit order: how many it appended, when its
    last row was inserted, when the first and the last of them arrived on NATS (from due)."""
    inserted: dict[str, float] = {}
    transaction_of: dict[str, str] = {}
    for row in fired.log.fired:
        inserted[row.transaction] = max(inserted.get(row.transaction, row.lag), row.lag)
        transaction_of[row.task_id] = row.transaction
    received: dict[str, list[float]] = {tx: [] for tx in inserted}
    for arrival in fired.arrivals:
        received[transaction_of[arrival.task_id]].append(arrival.lag)
    rows = [
        (len(received[tx]), inserted[tx], min(received[tx]), max(received[tx])) for tx in inserted
    ]
    return sorted(rows, key=lambda row: row[1])


def _p(values: list[float], fraction: float) -> float:
    return percentile(values, fraction) if values else 0.0


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks due in the burst")
    parser.add_argument("--singles", type=int, default=50, help="tasks of the single-task run")
    parser.add_argument(
        "--lead", type=float, help="seconds from creating the tasks to their due second"
    )
    parser.add_argument("--skip-apscheduler", action="store_true")
    parser.add_argument("--sealer", action="store_true", help="run `deployx sealer` too")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help=f"{CLUSTER_NODES}-node NATS cluster, {CLUSTER_SERVICE_REPLICAS} processes per service",
    )
    parser.add_argument("--profile", type=Path, help="py-spy profiles of the burst into DIR")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and logs")
    args = parser.parse_args()
    if args.lead is None:
        args.lead = 5.0 + args.tasks / 1000  # creating and projecting 1,000 takes ~0.15 s
    tmp = Path(tempfile.mkdtemp(prefix="deployx-fire-burst-"))
    try:
        with (
            EmbeddedPostgres(tmp / "postgres", fsync=True) as postgres,
            nats_servers(tmp, args.cluster) as (nats_url, nats_pids),
        ):
            assert postgres.pid is not None
            base = postgres.dsn.rsplit("/", 1)[0]
            database_url = f"{base}/deployx"
            asyncio.run(prepare(database_url, f"{base}/apscheduler"))
            env = os.environ | {
                "DEPLOYX_DATABASE_URL": database_url,
                "DEPLOYX_NATS_URL": nats_url,
                "DEPLOYX_LOG_FORMAT": "json",
                "DEPLOYX_LOG_LEVEL": "info",
                **cluster_env(args.cluster),
            }
            replicas = CLUSTER_SERVICE_REPLICAS if args.cluster else 1
            services = Services(tmp, env, postgres.pid, nats_pids, replicas=replicas)
            sealing = None
            try:
                services.start()
                if args.sealer:
                    services.spawn("sealer", seal_lag.COMMAND)
                single, fired = asyncio.run(run_deployx(database_url, nats_url, services, args))
                if args.sealer:
                    sealing = asyncio.run(seal_lag.measure(database_url))
                services.check_alive()
            finally:
                services.stop()
            aps = None
            if not args.skip_apscheduler:
                aps_url = f"postgresql+psycopg2://postgres@127.0.0.1:{postgres.port}/apscheduler"
                aps = run_apscheduler(aps_url, args.tasks, args.lead)
        print(report(single, fired, aps, setup_line(args.cluster)))
        if sealing is not None:
            print(sealing.line())
    finally:
        if args.keep:
            print(f"\ndata directory and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


async def prepare(database_url: str, apscheduler_url: str) -> None:
    await ensure_database(database_url)
    await migrate(database_url)
    await ensure_database(apscheduler_url)


if __name__ == "__main__":
    main()
