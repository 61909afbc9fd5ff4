"""Simulated agents: many devices played on one NATS connection, for bench.fanout and
bench.rollout.

    .venv/bin/python -m bench.sim_agents --devices 10000 --summary FILE   (until SIGTERM)
        [--first 0] [--interval 5] [--own-subjects] [--ready FILE]

Every device heartbeats once at the start (agents starting together), then every --interval
seconds (5, the real agent's default), spread over the interval. A wildcard subscription on
deployx.agents.*.jobs takes what executors send, as the real agent's protocol has it
(services/agent/protocol.py, `Job | CancelJob`). With --own-subjects, each device's jobs subject
is subscribed to instead, as real agents do: several such processes, each playing devices
--first to --first + --devices - 1 (bench.fleet_sim), each get the jobs of their own devices
only, so that a resend or a cancel reaches the journal that saw the job. (A queue group shared
by the processes delivered a resend to any of them: a process that had not seen the job ran it
again. A subscription per device costs the simulator more CPU per job than a wildcard's: nats-py
runs a task per subscription.)

- a new Job is answered "accepted" at once, then "finished" success: at once, or N seconds
  later when its command is `sleep N` (a job that takes time, to be canceled meanwhile);
- a Job seen before (a resend) is answered from the journal: its finished report, or
  "accepted" while it still runs; it never runs twice;
- a CancelJob of a job still running ends it "canceled" at once (the real agent does once the
  job's process group is gone); of a job never seen, records it canceled (it never starts);
  of a finished job, repeats its report.

On SIGTERM it writes FILE: counts of what it saw and sent, and per execution the number of
new jobs, the time.time() of the first and the last new job received, the cancels received
and the jobs they ended while running.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.aio.msg

from services.agent.protocol import (
    AgentWork,
    CancelJob,
    Heartbeat,
    Job,
    JobReport,
    device_of,
    heartbeat_subject,
    jobs_subject,
    results_subject,
)
from services.domain.kinds.command import CommandPayload
from services.infra.bus import servers
from services.infra.clock import wait_first

HEARTBEAT_SECONDS = 5.0  # the real agent's default
HEARTBEAT_SLICES = 20  # heartbeats go out in this many slices per interval, as agents spread
DEVICE_PREFIX = "sim-"
CANCELED = "canceled: the bench's simulated device stopped the job"
_SLEEP = re.compile(r"^sleep ([0-9]+(?:\.[0-9]+)?)$")
_encode = msgspec.json.Encoder().encode
_work = msgspec.json.Decoder(AgentWork)
_command = msgspec.json.Decoder(CommandPayload)


def device_ids(count: int, first: int = 0) -> list[str]:
    return [f"{DEVICE_PREFIX}{index:06d}" for index in range(first, first + count)]


def sleep_command(seconds: float) -> str:
    """The command a simulated device takes `seconds` over (it runs nothing)."""
    return f"sleep {seconds:g}" if seconds > 0 else "true"


def job_seconds(job: Job) -> float:
    """How long a simulated device works on a job: N for the command `sleep N`, else 0."""
    if job.task_type != "command":
        return 0.0
    try:
        payload = _command.decode(job.payload)
    except msgspec.DecodeError:
        return 0.0
    match = _SLEEP.match(payload.command.strip())
    return float(match.group(1)) if match else 0.0


class RunSeen(msgspec.Struct):
    """What the simulated devices saw of one execution."""

    jobs: int = 0  # new jobs (not resends)
    first_job: float = 0.0  # time.time() when the first new job arrived
    last_job: float = 0.0
    cancels: int = 0
    canceled_running: int = 0


class SimulatedAgents:
    """The devices' side of the jobs subjects; one journal for all of them."""

    def __init__(self, client: nats.aio.client.Client) -> None:
        self._nc = client
        self.counts: collections.Counter[str] = collections.Counter()
        self.runs: dict[str, RunSeen] = {}
        # job id -> its finished report, None while it runs; and the execution it belongs to
        self._journal: dict[str, JobReport | None] = {}
        self._execution_of: dict[str, str] = {}
        self._running: dict[str, asyncio.Task[None]] = {}

    async def on_work(self, msg: nats.aio.msg.Msg) -> None:
        try:
            work = _work.decode(msg.data)
        except msgspec.DecodeError:
            self.counts["undecodable"] += 1
            return
        subject = results_subject(device_of(msg.subject))
        if isinstance(work, CancelJob):
            await self._cancel(subject, work.job_id)
            return
        self.counts["jobs"] += 1
        if work.job_id in self._journal:
            self.counts["repeated"] += 1
            known = self._journal[work.job_id]
            await self._publish(subject, known or JobReport(job_id=work.job_id, state="accepted"))
            return
        now = time.time()
        seen = self.runs.setdefault(work.execution_id, RunSeen(first_job=now))
        seen.jobs += 1
        seen.last_job = now
        self._journal[work.job_id] = None
        self._execution_of[work.job_id] = work.execution_id
        await self._publish(subject, JobReport(job_id=work.job_id, state="accepted"))
        seconds = job_seconds(work)
        if seconds <= 0:
            await self._finish(subject, work.job_id, "success")
        else:
            self._running[work.job_id] = asyncio.create_task(
                self._finish_later(subject, work.job_id, seconds)
            )

    async def _finish_later(self, subject: str, job_id: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._running.pop(job_id, None)
        await self._finish(subject, job_id, "success")

    async def _cancel(self, subject: str, job_id: str) -> None:
        self.counts["cancels"] += 1
        seen = self.runs.get(self._execution_of.get(job_id, ""))
        if seen is not None:
            seen.cancels += 1
        running = self._running.pop(job_id, None)
        if running is not None:
            running.cancel()
            self.counts["canceled running"] += 1
            if seen is not None:
                seen.canceled_running += 1
            await self._finish(subject, job_id, "canceled")
        elif job_id not in self._journal:
            await self._finish(subject, job_id, "canceled")  # never started: it never will
        elif (known := self._journal[job_id]) is not None:
            await self._publish(subject, known)

    async def _finish(self, subject: str, job_id: str, status: str) -> None:
        if status == "success":
            report = JobReport(
                job_id=job_id, state="finished", status="success", exit_code=0, stdout="ok\n"
            )
        else:
            report = JobReport(job_id=job_id, state="finished", status="canceled", error=CANCELED)
        self._journal[job_id] = report
        await self._publish(subject, report)

    async def _publish(self, subject: str, report: JobReport) -> None:
        await self._nc.publish(subject, _encode(report))
        self.counts["reports"] += 1

    def stop(self) -> None:
        for task in self._running.values():
            task.cancel()

    def summary(self) -> dict[str, Any]:
        return {
            **self.counts,
            "executions": {run: msgspec.to_builtins(seen) for run, seen in self.runs.items()},
        }


async def play_agents(
    nats_url: str,
    devices: int,
    summary: Path,
    announced: float = HEARTBEAT_SECONDS,
    *,
    interval: float = HEARTBEAT_SECONDS,
    first: int = 0,
    own_subjects: bool = False,
    ready: Path | None = None,
) -> None:
    """Plays `devices` agents on one connection until SIGTERM; writes what it saw to summary.

    They beat every `interval` seconds, and say they do every `announced` seconds (what
    presence counts missed heartbeats in). With `ready`, the agents first connect, then write
    that file and announce themselves only on SIGUSR1: a benchmark times the devices, not
    this process's start."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await nats.connect(servers(nats_url), name="fanout-agents", max_reconnect_attempts=-1)
    ids = device_ids(devices, first)
    started_at = datetime.now(UTC)
    agents = SimulatedAgents(client)
    subjects = [jobs_subject(device) for device in ids] if own_subjects else []
    if ids and not own_subjects:
        subjects = ["deployx.agents.*.jobs"]
    subscriptions = [await client.subscribe(subject, cb=agents.on_work) for subject in subjects]

    async def beat(some: list[str]) -> None:
        sent_at = datetime.now(UTC)
        for device in some:
            beat = Heartbeat(
                device_id=device,
                hostname=device,
                os="linux",
                agent_version="bench",
                started_at=started_at,
                sent_at=sent_at,
                interval_seconds=announced,
            )
            await client.publish(heartbeat_subject(device), _encode(beat))
        agents.counts["heartbeats"] += len(some)

    per_slice = max(1, -(-len(ids) // HEARTBEAT_SLICES))
    try:
        if ready is not None:
            go = asyncio.Event()
            loop.add_signal_handler(signal.SIGUSR1, go.set)
            await asyncio.to_thread(ready.write_text, str(os.getpid()))
            await wait_first(go, stop)
        await beat(ids)  # every agent announces itself as it starts
        await client.flush()
        # Then each slice again in turn: no device is silent longer than an interval.
        await wait_first(stop, timeout=interval / HEARTBEAT_SLICES)
        while ids and not stop.is_set():
            for start in range(0, len(ids), per_slice):
                await beat(ids[start : start + per_slice])
                await wait_first(stop, timeout=interval / HEARTBEAT_SLICES)
                if stop.is_set():
                    break
        await stop.wait()
    finally:
        try:
            for subscription in subscriptions:
                await subscription.unsubscribe()
            agents.stop()
        finally:
            await asyncio.to_thread(summary.write_text, json.dumps(agents.summary()))
            await client.drain()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, required=True, help="simulated devices")
    parser.add_argument("--summary", type=Path, required=True, help="what they saw, on SIGTERM")
    parser.add_argument(
        "--announced-interval",
        type=float,
        default=None,
        help="the heartbeat interval the devices announce (default: --interval)",
    )
    parser.add_argument(
        "--interval", type=float, default=HEARTBEAT_SECONDS, help="seconds between heartbeats"
    )
    parser.add_argument("--first", type=int, default=0, help="the first device's number")
    parser.add_argument(
        "--own-subjects",
        action="store_true",
        help="subscribe to each device's jobs subject (processes playing parts of one fleet)",
    )
    parser.add_argument(
        "--ready", type=Path, help="once connected, write this file and announce on SIGUSR1"
    )
    args = parser.parse_args()
    asyncio.run(
        play_agents(
            os.environ["DEPLOYX_NATS_URL"],
            args.devices,
            args.summary,
            args.interval if args.announced_interval is None else args.announced_interval,
            interval=args.interval,
            first=args.first,
            own_subjects=args.own_subjects,
            ready=args.ready,
        )
    )


if __name__ == "__main__":
    main()
