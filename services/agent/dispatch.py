"""The agent's table of task kind -> runner, built from the kinds registry, and what a runner
is given besides its payload."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import nats.aio.client

from services.agent.file_fetch import FileFetcher
from services.agent.protocol import Job, JobOutcome
from services.domain.kinds import KINDS


@dataclass(frozen=True, kw_only=True)
class JobContext:
    """One job as its runner sees it, beyond the payload: whose it is and what it may use."""

    job: Job
    device_id: str
    client: nats.aio.client.Client
    state_dir: Path
    allow_roots: list[Path]

    def env(self) -> dict[str, str]:
        """What a process of the job can tell: where and as part of what it runs."""
        return {
            "DEPLOYX_DEVICE_ID": self.device_id,
            "DEPLOYX_EXECUTION_ID": self.job.execution_id,
            "DEPLOYX_TASK_ID": self.job.task_id,
        }

    def fetcher(self) -> FileFetcher:
        """The job's file from the file server: for this device and this job only."""
        return FileFetcher(self.client, self.device_id, self.job.job_id)


# A runner takes its kind's payload Struct: `async def run(payload, context) -> JobOutcome`.
Runner = Callable[[Any, JobContext], Awaitable[JobOutcome]]


def load_runners() -> dict[str, Runner]:
    """Each kind's runner: `run` of the agent module its TaskKind names."""
    return {name: importlib.import_module(kind.agent_module).run for name, kind in KINDS.items()}


async def execute(job: Job, context: JobContext, runners: dict[str, Runner]) -> JobOutcome:
    """Decodes the job's payload as its kind's Struct and hands it to the kind's runner."""
    kind, runner = KINDS.get(job.task_type), runners.get(job.task_type)
    if kind is None or runner is None:
        return JobOutcome(status="failed", error=f"this agent cannot run {job.task_type} jobs")
    try:
        payload = msgspec.json.decode(job.payload, type=kind.payload_type)
    except msgspec.DecodeError as exc:  # an executor of another version, say
        error = f"this agent cannot read the {job.task_type} payload: {exc}"
        return JobOutcome(status="failed", error=error)
    return await runner(payload, context)
