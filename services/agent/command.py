"""Runs a command job: the command under its shell, as a process of its own (process.py)."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from services.agent.process import outcome_of, run_process
from services.agent.protocol import JobOutcome
from services.domain.kinds.command import CommandPayload

if TYPE_CHECKING:
    from services.agent.dispatch import JobContext

SHELLS: dict[str, list[str]] = {
    "bash": ["bash", "-c"],
    "sh": ["sh", "-c"],
    "zsh": ["zsh", "-c"],
    "powershell": ["powershell", "-NoProfile", "-NonInteractive", "-Command"],
    "pwsh": ["pwsh", "-NoProfile", "-NonInteractive", "-Command"],
    "cmd": ["cmd", "/c"],
    "python3": ["python3", "-c"],
}


async def run(payload: CommandPayload, context: JobContext) -> JobOutcome:
    """The command kind's runner: the job's DEPLOYX_* variables come before the payload's env."""
    return await run_command(payload, context.env())


async def run_command(payload: CommandPayload, job_env: dict[str, str] | None = None) -> JobOutcome:
    """Runs a command_payload: command, shell, timeout_seconds, env, working_dir."""
    env = {**os.environ, **(job_env or {}), **payload.env}
    if shutil.which(SHELLS[payload.shell][0], path=env.get("PATH")) is None:
        error = f"shell {payload.shell!r} is not installed on this device"
        return JobOutcome(status="failed", error=error)
    argv = [*SHELLS[payload.shell], payload.command]
    timeout = payload.timeout_seconds
    result = await run_process(argv, env=env, cwd=payload.working_dir, timeout=timeout)
    return outcome_of(result, timeout)
