"""Rollout: one run to 10,000 simulated devices without limits, with waves and a concurrency
limit, and that run canceled mid-way.

    .venv/bin/python -m bench.rollout [--devices 10000] [--rounds 3] [--cancels 2]
        [--job-seconds 0] [--cancel-job-seconds 2] [--cancel-at 0.5] [--profile DIR] [--keep]
        [--cluster]

The stack of bench.fanout: embedded PostgreSQL (fsync on) and NATS, `deployx projector`,
`relay`, `ticker`, `executor --type command` and `api` as processes, and --devices agents
played by bench/sim_agents.py in one more. Every run is an ad-hoc run of a command on every
device, `POST /api/executions`:

(a) no delivery policy: every device at once;
(b) `delivery: {"waves": [100, "10%", "100%"], "max_concurrency": 2000}`.
    (a) and (b) alternate, --rounds pairs. A job takes --job-seconds on a simulated device (0:
    answered at once, as in bench.fanout). Each run is timed ExecutionRequested ->
    ExecutionCompleted (`recorded_at` in the events table), and until the relay and every read
    table have passed its end (work a short run leaves for after it). Each is checked from its
    stream: every device dispatched once and succeeded; for (b), no device dispatched before
    every device of the waves before its own had a result, and never more than max_concurrency
    devices dispatched without a result.
(c) (b) with jobs of --cancel-job-seconds, canceled (`POST /api/executions/{id}/cancel`) once
    --cancel-at of its devices were dispatched, --cancels times. Timed from sending the cancel
    to the last DeviceJobDispatched recorded, to the last new job a simulated device received
    (jobs go out after their event is recorded), and to ExecutionCompleted, which must say
    "canceled"; checked that no DeviceJobDispatched follows the cancel in the stream, every
    device has a result, and the jobs that were running ended canceled.

Goals (issue 11): (b) within 1.5 times (a) (median of the rounds); after a cancel, no new job
dispatched later than 1 s, and the run ended within 6 s.

--profile DIR records every process with py-spy during each run (DIR/<run>/<process>.txt).
--executor-from DIR: every round runs its pair twice, once with this tree's executor and once
with the executor of the source tree DIR (the process restarted with PYTHONPATH=DIR, the rest of
the stack and the devices as they are), the order swapped every other round; the report lists
both, the second as a-N-x and b-N-x. Before and after under the same load, set up once.
--announced-interval 60: the simulated devices announce a 60 s heartbeat interval (they still
beat every 5 s), for the registry's sake (bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from bench.fanout import (
    Bench,
    Stack,
    add_stack_arguments,
    bench_ready,
    cpu_line,
    s,
    stack_running,
    wait_for,
    wait_presence_steady,
)
from bench.fire_burst import setup_line, wait_settled
from bench.sim_agents import device_ids, sleep_command
from events.execution import (
    Delivery,
    DeviceJobDispatched,
    DeviceResultRecorded,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionRequested,
    ExecutionStarted,
    ExecutionTargetsAdded,
)
from services.domain.delivery import concurrency, wave_sizes
from services.infra.store import read_stream

EXECUTIONS = "/api/executions"
WAVES: list[int | str] = [100, "10%", "100%"]
MAX_CONCURRENCY = 2000
RATIO_GOAL = 1.5  # (b) / (a)
STOP_DISPATCH_GOAL = 1.0  # seconds from the cancel to the last new job sent
END_GOAL = 6.0  # seconds from the cancel to ExecutionCompleted
JOB_TIMEOUT = 600  # seconds, the jobs' own timeout (never reached)
POLL = 0.02
TIMELINE_MAX = 30  # a run's dispatches are listed when there are no more than this


def limited() -> Delivery:
    return Delivery(waves=WAVES, max_concurrency=MAX_CONCURRENCY)


# --- one run as its stream records it ----------------------------------------------------------


@dataclass
class RunLog:
    """An execution's stream; instants are time.time() seconds of `recorded_at`."""

    execution_id: str
    targets: list[str] = field(default_factory=list)
    delivery: Delivery = field(default_factory=Delivery)
    requested: float = 0.0
    started: float = 0.0
    completed: float = 0.0
    status: str = ""
    error_message: str | None = None
    cancel_requested: float | None = None
    cancel_version: int | None = None
    # (recorded_at, version, devices, encoded size in bytes)
    dispatches: list[tuple[float, int, list[str], int]] = field(default_factory=list)
    # (recorded_at, version, device, status)
    results: list[tuple[float, int, str, str]] = field(default_factory=list)

    @property
    def total(self) -> float:
        return self.completed - self.requested

    @property
    def last_dispatch(self) -> float:
        return max((at for at, *_ in self.dispatches), default=0.0)

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for *_, status in self.results:
            counts[status] = counts.get(status, 0) + 1
        return dict(sorted(counts.items()))


async def run_log(bench: Bench, execution_id: str) -> RunLog:
    log = RunLog(execution_id)
    for recorded in await read_stream(bench.pool, execution_id):
        at, version, event = recorded.recorded_at.timestamp(), recorded.version, recorded.event
        match event:
            case ExecutionRequested():
                log.requested = at
            case ExecutionStarted():
                log.started, log.targets, log.delivery = at, list(event.device_ids), event.delivery
            case ExecutionTargetsAdded():  # the targets beyond the first event's
                log.targets.extend(event.device_ids)
            case DeviceJobDispatched():
                size = len(msgspec.json.encode(event))
                log.dispatches.append((at, version, event.device_ids, size))
            case DeviceResultRecorded():
                log.results.append((at, version, event.device_id, event.status))
            case ExecutionCancelRequested():
                log.cancel_requested, log.cancel_version = at, version
            case ExecutionCompleted():
                log.completed, log.status = at, event.status
                log.error_message = event.error_message
    return log


def check_delivery(log: RunLog) -> list[str]:
    """Where the stream breaks the run's policy: a device dispatched twice, or before the waves
    before its own were finished, or beyond the concurrency limit."""
    problems: list[str] = []
    wave_of: dict[str, int] = {}
    offset = 0
    sizes = wave_sizes(log.delivery, len(log.targets))
    for number, size in enumerate(sizes):
        wave_of |= {device: number for device in log.targets[offset : offset + size]}
        offset += size
    left_in_wave = list(sizes)
    limit = concurrency(log.delivery, len(log.targets))
    dispatched: set[str] = set()
    finished: set[str] = set()
    running = 0
    events = sorted(
        [(version, "dispatch", devices) for _, version, devices, _ in log.dispatches]
        + [(version, "result", [device]) for _, version, device, _ in log.results]
    )
    for version, kind, devices in events:
        for device in devices:
            if kind == "result":
                if device not in finished:
                    left_in_wave[wave_of[device]] -= 1
                    running -= device in dispatched
                finished.add(device)
                continue
            if device in dispatched:
                problems.append(f"{device} dispatched twice (version {version})")
            dispatched.add(device)
            running += 1
            open_before = [n for n in range(wave_of[device]) if left_in_wave[n] > 0]
            if open_before:
                problems.append(
                    f"{device} of wave {wave_of[device] + 1} dispatched while wave "
                    f"{open_before[0] + 1} was unfinished (version {version})"
                )
        if running > limit:
            problems.append(f"{running} running at version {version}, over the limit {limit}")
    return problems[:5]


# --- the scenarios -----------------------------------------------------------------------------


@dataclass
class Measured:
    label: str
    log: RunLog
    cpu: dict[str, float]
    problems: list[str]
    steady_wait: float  # seconds waited, before it, for every device to be steadily online
    offline_events: int  # DeviceWentOffline recorded while it ran (the registry fell behind)
    settled: float  # time.time() once the relay and every read table had passed its end
    cpu_to_settle: dict[str, float]  # CPU seconds from its end until then
    # (c) only: time.time() as the cancel was sent and when its 202 came back
    cancel_sent: float | None = None
    cancel_answered: float | None = None


async def start_run(bench: Bench, label: str, delivery: Delivery | None, seconds: float) -> str:
    devices = device_ids(bench.stack.devices)
    body: dict[str, Any] = {
        "name": f"rollout {label}",
        "task_type": "command",
        "task_payload": {
            "command_payload": {"command": sleep_command(seconds), "timeout_seconds": JOB_TIMEOUT}
        },
        "device_ids": devices,
    }
    if delivery is not None:
        body["delivery"] = msgspec.to_builtins(delivery)
    async with bench.session.post(f"{bench.base}{EXECUTIONS}", json=body) as response:
        answer = await response.json()
        if response.status != 202:
            raise RuntimeError(f"POST {EXECUTIONS}: {response.status} {answer}")
    return str(answer["execution_id"])


async def ended(bench: Bench, execution_id: str) -> bool:
    found = await bench.pool.fetchval(
        "SELECT 1 FROM events WHERE stream_id = $1 AND type = 'ExecutionCompleted'",
        execution_id,
    )
    return found is not None


async def wait_ended(bench: Bench, execution_id: str, timeout: float) -> None:
    async def done() -> bool:
        return await ended(bench, execution_id)

    await wait_for(f"execution {execution_id} to complete", done, bench.stack, timeout, POLL)


async def dispatched_count(bench: Bench, execution_id: str) -> int:
    count = await bench.pool.fetchval(
        "SELECT coalesce(sum(jsonb_array_length(data -> 'device_ids')), 0) FROM events "
        "WHERE stream_id = $1 AND type = 'DeviceJobDispatched'",
        execution_id,
    )
    return int(count)


async def measure(
    bench: Bench,
    label: str,
    delivery: Delivery | None,
    seconds: float,
    profile: Path | None,
    cancel_at: float | None = None,
) -> Measured:
    """One run from its request to its end; canceled once cancel_at of its devices were
    dispatched if cancel_at is given."""
    stack = bench.stack
    steady_wait = await wait_presence_steady(bench.pool, stack)
    await wait_settled(bench.pool, stack)
    timeout = 120.0 + 20 * seconds
    with stack.profiled(None if profile is None else profile / label):
        cpu_before = stack.cpu()
        execution_id = await start_run(bench, label, delivery, seconds)
        sent = answered = None
        if cancel_at is not None:
            wanted = cancel_at * stack.devices

            async def midway() -> bool:
                if await dispatched_count(bench, execution_id) >= wanted:
                    return True
                if await ended(bench, execution_id):
                    raise RuntimeError(f"{label} ended before {wanted:,.0f} were dispatched")
                return False

            await wait_for(f"{wanted:,.0f} devices dispatched", midway, stack, timeout, POLL)
            sent = time.time()
            url = f"{bench.base}{EXECUTIONS}/{execution_id}/cancel"
            async with bench.session.post(url, json={"reason": "bench"}) as response:
                answer = await response.json()
                if response.status != 202:
                    raise RuntimeError(f"cancel: {response.status} {answer}")
            answered = time.time()
        await wait_ended(bench, execution_id, timeout)
        cpu_after = stack.cpu()
        await wait_settled(bench.pool, stack)
        settled = time.time()
        cpu_settled = stack.cpu()
    log = await run_log(bench, execution_id)
    cpu = {name: cpu_after[name] - cpu_before[name] for name in cpu_before}
    after = {name: cpu_settled[name] - cpu_after[name] for name in cpu_before}
    problems = check_run(log, canceled=cancel_at is not None)
    offline = await bench.pool.fetchval(
        "SELECT count(*) FROM events WHERE type = 'DeviceWentOffline' "
        "AND recorded_at BETWEEN to_timestamp($1) AND to_timestamp($2)",
        log.requested,
        log.completed,
    )
    note = f" PROBLEMS {problems}" if problems else ""
    print(f"{label}: {s(log.total)}{note}", file=sys.stderr)
    return Measured(
        label, log, cpu, problems, steady_wait, int(offline), settled, after, sent, answered
    )


def check_run(log: RunLog, canceled: bool) -> list[str]:
    problems = check_delivery(log)
    devices = {device for _, _, device, _ in log.results}
    if len(log.results) != len(log.targets) or len(devices) != len(log.targets):
        problems.append(f"{len(log.results):,} results of {len(devices):,} devices")
    statuses = log.statuses()
    if not canceled:
        dispatched = sum(len(devices) for _, _, devices, _ in log.dispatches)
        if dispatched != len(log.targets):
            problems.append(f"{dispatched:,} dispatched of {len(log.targets):,}")
        if log.status != "success" or statuses.get("success") != len(log.targets):
            problems.append(f"status {log.status}, results {statuses}")
        return problems
    if log.status != "canceled":
        problems.append(f"status {log.status}, not canceled")
    if log.cancel_version is None:
        problems.append("no ExecutionCancelRequested")
    elif any(version > log.cancel_version for _, version, _, _ in log.dispatches):
        problems.append("a DeviceJobDispatched after the cancel")
    if set(statuses) - {"success", "canceled"}:
        problems.append(f"results {statuses}")
    return problems


@dataclass
class Figures:
    pairs: list[tuple[Measured, Measured]]
    cancels: list[Measured]
    # --executor-from: the pairs run with that tree's executor
    other_pairs: list[tuple[Measured, Measured]] = field(default_factory=list)


async def use_executor(stack: Stack, source: Path | None) -> None:
    """Restarts the executor with the code of source (None: this tree's), once it is idle."""
    proc = stack.procs["executor"]
    proc.terminate()
    await asyncio.to_thread(proc.wait, 30)
    env = stack.env | ({"PYTHONPATH": str(source)} if source is not None else {})
    original, stack.env = stack.env, env
    try:
        stack.spawn("executor", stack.commands["executor"])
    finally:
        stack.env = original
    log = stack.log_dir / "executor.log"

    async def started() -> bool:
        return "executor_started" in log.read_text(errors="replace")

    await wait_for("the executor to start", started, stack, 60.0)


async def run_pair(bench: Bench, label: str, args: argparse.Namespace) -> tuple[Measured, Measured]:
    a = await measure(bench, f"a-{label}", None, args.job_seconds, args.profile)
    b = await measure(bench, f"b-{label}", limited(), args.job_seconds, args.profile)
    return a, b


async def run_benchmark(database_url: str, stack: Stack, args: argparse.Namespace) -> Figures:
    figures = Figures([], [])
    other: Path | None = args.executor_from
    async with bench_ready(database_url, stack) as bench:
        for number in range(1, args.rounds + 1):
            if other is None:
                figures.pairs.append(await run_pair(bench, str(number), args))
                continue
            # Each tree's pair first in every other round, on the same stack and devices.
            order = [None, other] if number % 2 else [other, None]
            for source in order:
                await use_executor(stack, source)
                found = figures.pairs if source is None else figures.other_pairs
                label = f"{number}" if source is None else f"{number}-x"
                found.append(await run_pair(bench, label, args))
            await use_executor(stack, None)
        for number in range(1, args.cancels + 1):
            figures.cancels.append(
                await measure(
                    bench,
                    f"c-{number}",
                    limited(),
                    args.cancel_job_seconds,
                    args.profile,
                    cancel_at=args.cancel_at,
                )
            )
    return figures


# --- the report --------------------------------------------------------------------------------


def run_line(measured: Measured) -> list[str]:
    log = measured.log
    t0 = log.requested
    sizes = [size for *_, size in log.dispatches]
    lines = [
        f"  {measured.label}: ExecutionRequested -> ExecutionCompleted {s(log.total)} "
        f"(-> started {s(log.started - t0)}, -> first result "
        f"{s(min(at for at, *_ in log.results) - t0)}, -> last dispatch "
        f"{s(log.last_dispatch - t0)}, -> last result "
        f"{s(max(at for at, *_ in log.results) - t0)}); {len(log.dispatches)} "
        f"DeviceJobDispatched (largest {max(sizes, default=0) / 1024:,.0f} KiB); "
        f"status {log.status}, {log.statuses()}",
        f"    CPU seconds: {cpu_line(measured.cpu)}",
        f"    relay and read tables past its end {s(measured.settled - t0)} after the request; "
        f"CPU seconds from its end until then: {cpu_line(settling(measured.cpu_to_settle))}",
        f"    before it, {s(measured.steady_wait)} waiting for every device to be steadily "
        f"online; {measured.offline_events:,} DeviceWentOffline while it ran",
    ]
    if 1 < len(log.dispatches) <= TIMELINE_MAX:
        lines.append(
            "    dispatched: "
            + ", ".join(f"{len(devices):,} at {s(at - t0)}" for at, _, devices, _ in log.dispatches)
        )
    if measured.problems:
        lines.append(f"    PROBLEMS: {'; '.join(measured.problems)}")
    return lines


def settling(cpu: dict[str, float]) -> dict[str, float]:
    """The processes that follow the log, of a CPU breakdown."""
    followers = ("projector", "relay", "api", "postgres")
    return {name: seconds for name, seconds in cpu.items() if name.split("-")[0] in followers}


@dataclass(frozen=True)
class CancelFigures:
    recorded: float  # cancel sent -> ExecutionCancelRequested recorded
    answered: float  # cancel sent -> its 202
    last_dispatch: float  # cancel sent -> last DeviceJobDispatched recorded
    last_job: float  # cancel sent -> last new job received by a simulated device
    ended: float  # cancel sent -> ExecutionCompleted recorded
    dispatched: int
    canceled_running: int

    @property
    def stopped(self) -> float:
        return max(self.last_dispatch, self.last_job)


def cancel_figures(measured: Measured, agents: dict[str, Any]) -> CancelFigures:
    log = measured.log
    assert measured.cancel_sent is not None and measured.cancel_answered is not None
    sent = measured.cancel_sent
    seen = agents.get("executions", {}).get(log.execution_id, {})
    return CancelFigures(
        recorded=(log.cancel_requested or 0.0) - sent,
        answered=measured.cancel_answered - sent,
        last_dispatch=log.last_dispatch - sent,
        last_job=float(seen.get("last_job", 0.0)) - sent if seen else float("nan"),
        ended=log.completed - sent,
        dispatched=sum(len(devices) for _, _, devices, _ in log.dispatches),
        canceled_running=int(seen.get("canceled_running", 0)),
    )


def report(figures: Figures, args: argparse.Namespace, agents: dict[str, Any], load: float) -> str:
    lines = [
        f"Rollout: {args.devices:,} simulated devices on one NATS connection (PostgreSQL fsync "
        f"on, {os.cpu_count()} cores, load average {load:.2f} before the run)",
        *([f"  {setup_line(args.cluster)}"] if args.cluster else []),
    ]
    met = True
    for pairs, whose in (
        (figures.pairs, "this tree's executor"),
        (figures.other_pairs, f"the executor of {args.executor_from} (-x)"),
    ):
        if not pairs:
            continue
        lines.append(
            f"\n(a) no limits, (b) waves {WAVES} and max_concurrency {MAX_CONCURRENCY}; "
            f"jobs of {args.job_seconds:g} s on a device; {len(pairs)} pair(s); {whose}"
        )
        for a, b in pairs:
            lines += run_line(a) + run_line(b)
            lines.append(f"  ratio b/a: {b.log.total / a.log.total:.2f}")
        a_med = statistics.median(a.log.total for a, _ in pairs)
        b_med = statistics.median(b.log.total for _, b in pairs)
        ok = b_med <= RATIO_GOAL * a_med and not any(a.problems or b.problems for a, b in pairs)
        met = met and (ok or pairs is figures.other_pairs)
        lines.append(
            f"  median (a) {s(a_med)}, (b) {s(b_med)}: ratio {b_med / a_med:.2f}; goal <= "
            f"{RATIO_GOAL}x: " + ("met" if ok else "MISSED")
        )
    if figures.cancels:
        lines.append(
            f"\n(c) (b) with jobs of {args.cancel_job_seconds:g} s, canceled once "
            f"{args.cancel_at:.0%} of the devices were dispatched"
        )
        for measured in figures.cancels:
            c = cancel_figures(measured, agents)
            ok = c.stopped <= STOP_DISPATCH_GOAL and c.ended <= END_GOAL and not measured.problems
            met = met and ok
            lines += run_line(measured)
            lines.append(
                f"    from sending the cancel: 202 after {s(c.answered)}, "
                f"ExecutionCancelRequested recorded {s(c.recorded)}, last DeviceJobDispatched "
                f"{s(c.last_dispatch)}, last new job received by a device {s(c.last_job)}, "
                f"ExecutionCompleted {s(c.ended)}; {c.dispatched:,} devices were dispatched, "
                f"{c.canceled_running:,} jobs canceled while running; goals (stop dispatch "
                f"<= {STOP_DISPATCH_GOAL:g} s, end <= {END_GOAL:g} s): "
                + ("met" if ok else "MISSED")
            )
    lines.append(
        f"\nsimulated agents: {agents.get('jobs', 0):,} jobs received "
        f"({agents.get('repeated', 0):,} repeated), {agents.get('cancels', 0):,} cancels, "
        f"{agents.get('reports', 0):,} reports and {agents.get('heartbeats', 0):,} heartbeats sent"
    )
    lines.append("\nall goals met" if met else "\ngoals NOT met")
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=10_000, help="simulated devices")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of (a) and (b) runs")
    parser.add_argument("--cancels", type=int, default=2, help="canceled runs (c)")
    parser.add_argument(
        "--job-seconds", type=float, default=0.0, help="a job's time on a device in (a) and (b)"
    )
    parser.add_argument(
        "--cancel-job-seconds", type=float, default=2.0, help="a job's time on a device in (c)"
    )
    parser.add_argument(
        "--cancel-at", type=float, default=0.5, help="share of devices dispatched at the cancel"
    )
    parser.add_argument("--profile", type=Path, help="py-spy profiles of each run into DIR")
    parser.add_argument(
        "--executor-from",
        type=Path,
        help="also run each pair with the executor of the source tree DIR (e.g. a `git archive` "
        "of another commit), restarted between pairs: before and after on one stack",
    )
    add_stack_arguments(parser)
    args = parser.parse_args(argv)
    if not 0 < args.cancel_at < 1:
        parser.error("--cancel-at must be between 0 and 1")
    load = os.getloadavg()[0]
    with stack_running("rollout", args) as (database_url, stack):
        figures = asyncio.run(run_benchmark(database_url, stack, args))
    print(report(figures, args, stack.agents_summary(), load))


if __name__ == "__main__":
    main()
