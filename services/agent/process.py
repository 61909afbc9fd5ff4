"""Runs a process for a job: its own process group, capped output, a timeout (and a cancel)
that ends the whole group, and the job's outcome from how it ended."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from dataclasses import dataclass
from typing import Any

from services.agent.protocol import OUTPUT_LIMIT, TRUNCATED_MARKER, JobOutcome

KILL_GRACE_SECONDS = 2.0  # between SIGTERM and SIGKILL to the process group, on timeout
# On a cancel (the task is canceled): the contract's grace before SIGKILL.
CANCEL_GRACE_SECONDS = 5.0
DRAIN_GRACE = 2.0  # seconds of reading on after the exit, while a background child holds a pipe


class _Capture:
    """Reads a pipe as the loop says it is readable; keeps its first OUTPUT_LIMIT bytes only."""

    def __init__(self, fd: int) -> None:
        self.fd, self.data, self.truncated = fd, bytearray(), False
        self.eof = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close()
            return
        room = OUTPUT_LIMIT - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        if len(chunk) > room:
            self.truncated = True  # and the rest is dropped: the child never blocks on us

    def close(self) -> None:
        if self.fd >= 0:
            self._loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
            self.eof.set()

    def text(self) -> str:
        text = self.data.decode("utf-8", errors="replace")
        return text + TRUNCATED_MARKER if self.truncated else text


@dataclass(frozen=True, kw_only=True)
class ProcessResult:
    """What a finished (or killed) process left: exit code None when it never ran or timed out."""

    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    timed_out: bool = False
    error: str | None = None

    def truncation(self) -> dict[str, Any]:
        cut = {"stdout_truncated": self.stdout_truncated, "stderr_truncated": self.stderr_truncated}
        return {key: True for key, value in cut.items() if value}


async def _kill_group(proc: asyncio.subprocess.Process, grace: float = KILL_GRACE_SECONDS) -> None:
    """SIGTERM to the whole group, SIGKILL to whatever is left after the grace period."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while loop.time() < deadline:
        if proc.returncode is not None:
            try:
                os.killpg(proc.pid, 0)  # is anyone of the group left?
            except OSError:
                break
        await asyncio.sleep(0.05)
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()


def _cannot_start(program: str, env: dict[str, str] | None, cwd: str | None) -> str | None:
    if shutil.which(program, path=(env or os.environ).get("PATH")) is None:
        return f"{program!r} is not installed (not on PATH)"
    if cwd is not None and not os.path.isdir(cwd):
        return f"working directory {cwd!r} does not exist"
    return None


async def run_process(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
) -> ProcessResult:
    """Runs argv in a new session, capturing capped stdout and stderr; never raises OSError.

    On timeout the process group is killed and the result has timed_out set; on cancellation
    the group gets SIGTERM, then SIGKILL after CANCEL_GRACE_SECONDS, before CancelledError
    goes on.
    """
    problem = _cannot_start(argv[0], env, cwd)
    if problem is not None:
        return ProcessResult(exit_code=None, error=problem)
    # Our own pipes rather than PIPE: Process.wait() then waits for the exit alone, not also
    # for a background child that inherited stdout to close it.
    (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    except BaseException as exc:
        for fd in (out_r, err_r):
            os.close(fd)
        if not isinstance(exc, OSError):
            raise
        return ProcessResult(exit_code=None, error=f"could not start {argv[0]!r}: {exc}")
    finally:
        for fd in (out_w, err_w):
            os.close(fd)
    out, err = _Capture(out_r), _Capture(err_r)
    timed_out = False
    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            timed_out = True
            await _kill_group(proc)
        # A background child may hold the pipes: read on for a moment, then close our ends.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(out.eof.wait(), err.eof.wait()), DRAIN_GRACE)
    except asyncio.CancelledError:
        # The group ends (and is reaped) before the cancellation goes on.
        await asyncio.shield(_kill_group(proc, CANCEL_GRACE_SECONDS))
        raise
    finally:
        out.close()
        err.close()
    return ProcessResult(
        exit_code=None if timed_out else proc.returncode,
        stdout=out.text(),
        stderr=err.text(),
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
        timed_out=timed_out,
    )


def outcome_of(result: ProcessResult, timeout: float) -> JobOutcome:
    """A finished process as a job's outcome: success on exit code 0, output kept either way."""
    if result.error is not None:
        return JobOutcome(status="failed", error=result.error)
    common: dict[str, Any] = {"stdout": result.stdout, "stderr": result.stderr}
    common |= {"exit_code": result.exit_code, "details": result.truncation()}
    if result.timed_out:
        return JobOutcome(status="timeout", error=f"timed out after {timeout:g} s", **common)
    if result.exit_code == 0:
        return JobOutcome(status="success", **common)
    code = result.exit_code or 0
    reason = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
    return JobOutcome(status="failed", error=reason, **common)
