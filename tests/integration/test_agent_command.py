"""The command runner against real shells and processes: output, exit codes, timeouts."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import msgspec

from services.agent.command import run_command as run_typed
from services.agent.protocol import OUTPUT_LIMIT, TRUNCATED_MARKER, JobOutcome
from services.domain.kinds.command import CommandPayload


async def run_command(payload: dict[str, Any]) -> JobOutcome:
    """The runner, given the payload as a user writes it and the agent decodes it."""
    return await run_typed(msgspec.convert(payload, CommandPayload))


def gone(pid: int) -> bool:
    """True when the process no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def test_success_with_stdout_and_stderr() -> None:
    outcome = await run_command({"command": "echo hello; echo oops >&2", "shell": "bash"})
    assert outcome.status == "success"
    assert outcome.exit_code == 0
    assert outcome.stdout == "hello\n"
    assert outcome.stderr == "oops\n"
    assert outcome.error is None
    assert outcome.details == {}


async def test_nonzero_exit_is_a_failure_with_its_code() -> None:
    outcome = await run_command({"command": "echo partial; exit 7", "shell": "sh"})
    assert outcome.status == "failed"
    assert outcome.exit_code == 7
    assert outcome.stdout == "partial\n"
    assert outcome.error == "exited with code 7"


async def test_python3_shell_env_added_and_working_dir(tmp_path: Path) -> None:
    command = "import os; print(os.getcwd(), os.environ['GREETING'], 'PATH' in os.environ)"
    outcome = await run_command(
        {
            "command": command,
            "shell": "python3",
            "env": {"GREETING": "hi there"},
            "working_dir": str(tmp_path),
        }
    )
    assert outcome.status == "success", outcome
    assert outcome.stdout == f"{tmp_path} hi there True\n"


async def test_missing_working_dir_fails_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    outcome = await run_command({"command": "true", "working_dir": str(missing)})
    assert outcome.status == "failed"
    assert outcome.error == f"working directory {str(missing)!r} does not exist"


async def test_missing_shell_fails_clearly() -> None:
    outcome = await run_command({"command": "dir", "shell": "cmd"})
    assert outcome.status == "failed"
    assert outcome.error == "shell 'cmd' is not installed on this device"


async def test_output_over_the_limit_is_truncated_and_marked_while_the_child_finishes() -> None:
    command = (
        "import sys; sys.stdout.write('x' * 1_000_000); sys.stdout.flush();"
        " sys.stderr.write('done')"
    )
    outcome = await run_command({"command": command, "shell": "python3"})
    assert outcome.status == "success"
    assert outcome.stdout == "x" * OUTPUT_LIMIT + TRUNCATED_MARKER
    assert outcome.stderr == "done"
    assert outcome.details == {"stdout_truncated": True}


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    late = tmp_path / "grandchild-was-here"
    pidfile = tmp_path / "grandchild.pid"
    # The grandchild would touch a file two seconds after the timeout if it survived.
    command = f"sh -c 'sleep 3; touch {late}' & echo $! > {pidfile}; echo started; sleep 60"
    started = time.monotonic()
    outcome = await run_command({"command": command, "shell": "bash", "timeout_seconds": 1})
    assert time.monotonic() - started < 3
    assert outcome.status == "timeout"
    assert outcome.error == "timed out after 1 s"
    assert outcome.stdout == "started\n"
    grandchild = int(pidfile.read_text())
    assert gone(grandchild)
    await asyncio.sleep(3)
    assert not late.exists()


async def test_timeout_escalates_to_sigkill_for_a_child_that_ignores_sigterm(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "stubborn.pid"
    command = f"sh -c 'trap \"\" TERM; sleep 60' & echo $! > {pidfile}; wait"
    started = time.monotonic()
    outcome = await run_command({"command": command, "shell": "bash", "timeout_seconds": 1})
    elapsed = time.monotonic() - started
    assert outcome.status == "timeout"
    assert 2.5 < elapsed < 6  # 1 s timeout, then the 2 s grace before SIGKILL
    assert gone(int(pidfile.read_text()))


async def test_agent_environment_is_untouched_by_job_env() -> None:
    await run_command({"command": "true", "env": {"DEPLOYX_TEST_ONLY": "1"}})
    assert "DEPLOYX_TEST_ONLY" not in os.environ


async def test_a_background_child_holding_the_pipes_does_not_hold_the_job(tmp_path: Path) -> None:
    pidfile = tmp_path / "daemon.pid"
    # setsid: a daemon of its own session, which keeps our stdout open and outlives the job.
    command = f"setsid sleep 30 & echo $! > {pidfile}; echo launched"
    started = time.monotonic()
    outcome = await run_command({"command": command, "shell": "bash", "timeout_seconds": 20})
    try:
        assert outcome.status == "success"
        assert outcome.stdout == "launched\n"
        assert time.monotonic() - started < 5
    finally:
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
