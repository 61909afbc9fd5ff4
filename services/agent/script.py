"""Runs a script job: the uploaded script, fetched and verified into a private file, run with
its arguments and environment as a command is (own process group, capped output, timeout that
kills the group), then deleted."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from msgspec.structs import replace

from services.agent.file_fetch import FetchFailed, fetch_verified
from services.agent.process import outcome_of, run_process
from services.agent.protocol import JobOutcome
from services.domain.kinds.script import ScriptPayload

if TYPE_CHECKING:
    from services.agent.dispatch import JobContext

# Under the agent's state directory: its own, and not mounted noexec as /tmp often is.
SCRIPTS_DIR = "scripts"
INTERPRETERS: dict[str, list[str]] = {
    "bash": ["bash"],
    "sh": ["sh"],
    "zsh": ["zsh"],
    "python3": ["python3"],
}


async def run(payload: ScriptPayload, context: JobContext) -> JobOutcome:
    """Runs a script_payload: file_id, args, env, interpreter, timeout_seconds, working_dir.

    The download and the run share timeout_seconds: the script gets what the download left.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + payload.timeout_seconds
    try:
        directory = await asyncio.to_thread(_private_directory, context.state_dir / SCRIPTS_DIR)
    except OSError as exc:
        return JobOutcome(status="failed", error=f"cannot make a place for the script: {exc}")
    try:
        script = directory / "script"
        try:
            with _private_file(script) as target:
                fetched = await fetch_verified(
                    context.fetcher(), payload.file_id, target, payload.timeout_seconds
                )
            first_line = await asyncio.to_thread(_first_bytes, script)
        except FetchFailed as failed:
            return failed.outcome
        except OSError as exc:
            return JobOutcome(status="failed", error=f"cannot write the script: {exc}")
        if payload.interpreter is None and not first_line.startswith(b"#!"):
            error = "the script has no #! line: give it one, or choose an interpreter"
            return JobOutcome(status="failed", error=error)
        runner = INTERPRETERS[payload.interpreter] if payload.interpreter else []
        argv = [*runner, str(script), *payload.args]
        env = {**os.environ, **context.env(), **payload.env}
        left = max(deadline - loop.time(), 0.0)
        result = await run_process(argv, env=env, cwd=payload.working_dir, timeout=left)
        outcome = outcome_of(result, payload.timeout_seconds)
        about = {"sha256": fetched.sha256, "size": fetched.size}
        return replace(outcome, details={**about, **outcome.details})
    finally:
        await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)


def _private_directory(parent: Path) -> Path:
    """A new directory only the agent's user may enter (mkdtemp makes it 0700)."""
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=parent, prefix="job-"))


def _private_file(path: Path) -> BinaryIO:
    """A new file only the agent's user may read, write or run (0700, whatever the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o700)
    os.fchmod(fd, 0o700)
    return os.fdopen(fd, "wb")


def _first_bytes(path: Path) -> bytes:
    with path.open("rb") as script:
        return script.read(2)
