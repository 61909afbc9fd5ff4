"""The `deployx` services as a user runs them: child processes with a log file each."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from services.infra.embedded import log_tail


def deployx_command() -> list[str]:
    """The `deployx` console script of the running venv (not resolved: a venv's python is a
    symlink), else the one on PATH."""
    beside = Path(sys.executable).parent / "deployx"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("deployx")
    if found is None:
        raise FileNotFoundError(f"no deployx script next to {sys.executable} nor on PATH")
    return [found]


class ServiceProcess:
    """One `deployx <command>` child; each start writes a new log file `<name>-<n>.log`."""

    def __init__(
        self, name: str, command: str | Sequence[str], log_dir: Path, env: Mapping[str, str]
    ) -> None:
        self.name, self.log_dir = name, log_dir
        self.command = [command] if isinstance(command, str) else list(command)
        self.env = dict(env)
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def start(self) -> ServiceProcess:
        if self.running:
            raise RuntimeError(f"{self.name} is running already")
        self.starts += 1
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [*deployx_command(), *self.command],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                # Its own session: a terminal's Ctrl-C reaches pytest only, which stops it.
                start_new_session=True,
            )
        return self

    def pause(self) -> None:
        """SIGSTOP: alive but silent, as a laptop that sleeps or a hung process."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def kill9(self) -> None:
        """SIGKILL, as a crash or an OOM kill would, and reap it."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()

    def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait for a clean exit; SIGKILL after `timeout`. The exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        return proc.returncode

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines of the current run; anything else is kept under `raw`."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        lines: list[dict[str, Any]] = []
        for line in text.splitlines():
            try:
                parsed = json.loads(line)
            except ValueError:
                parsed = None
            lines.append(parsed if isinstance(parsed, dict) else {"raw": line})
        return lines

    def logged(self, *events: str) -> bool:
        return any(line.get("event") in events for line in self.log_lines())

    def log_tail(self, lines: int = 30) -> str:
        return f"--- {self.log_path.name} (exit {self.returncode}) ---\n" + log_tail(
            self.log_path, lines
        )

    async def wait_for_log(self, *events: str, timeout: float = 20.0) -> None:
        """Until the current run logs one of `events`; fails at once if the process exits."""
        await wait_until(
            lambda: _true(self.logged(*events)),
            timeout,
            f"{self.name} to log {' or '.join(events)}",
            [self],
        )


class Services:
    """The services of one test; stops every one of them at the end, whatever happened."""

    def __init__(self, log_dir: Path, database_url: str, nats_url: str) -> None:
        self.log_dir = log_dir
        self.env = dict(os.environ) | {
            "DEPLOYX_DATABASE_URL": database_url,
            "DEPLOYX_NATS_URL": nats_url,
            "DEPLOYX_LOG_FORMAT": "json",
        }
        self.all: list[ServiceProcess] = []

    def start(self, name: str, command: str | Sequence[str]) -> ServiceProcess:
        service = ServiceProcess(name, command, self.log_dir, self.env)
        self.all.append(service)
        return service.start()

    def errors(self) -> list[str]:
        """Every error logged by any run of any service, and any line that is not JSON (a
        traceback printed past structlog)."""
        found: list[str] = []
        for service in self.all:
            for run in range(1, service.starts + 1):
                path = self.log_dir / f"{service.name}-{run}.log"
                found += [f"{path.name}: {line}" for line in _bad_lines(path)]
        return found

    def tails(self, lines: int = 30) -> str:
        return "\n".join(service.log_tail(lines) for service in self.all)

    def stop_all(self) -> None:
        for service in self.all:
            service.terminate()


def _bad_lines(path: Path) -> list[str]:
    bad: list[str] = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or parsed.get("level") in ("error", "critical"):
            bad.append(line)
    return bad


async def _true(value: bool) -> bool:
    return value


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    timeout: float,
    what: str,
    watched: list[ServiceProcess],
    interval: float = 0.02,
    explain: Callable[[], Awaitable[str]] | None = None,
) -> float:
    """Polls condition until it holds; returns the seconds it took. Fails with the watched
    services' logs when the deadline passes or one of them exits meanwhile, after what
    `explain` says of the state it was stuck in (the rows a test waited on, say)."""
    started = time.monotonic()
    deadline = started + timeout
    while not await condition():
        dead = [service for service in watched if not service.running]
        if dead or time.monotonic() > deadline:
            reason = f"{', '.join(s.name for s in dead)} exited" if dead else f"{timeout} s passed"
            tails = "\n".join(service.log_tail() for service in watched)
            state = "" if explain is None else f"{await explain()}\n"
            raise AssertionError(f"waiting for {what}: {reason}\n{state}{tails}")
        await asyncio.sleep(interval)
    return time.monotonic() - started
