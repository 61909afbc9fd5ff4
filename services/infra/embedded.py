"""What the embedded PostgreSQL and nats-server share: free ports, a child process, clean stops."""

from __future__ import annotations

import atexit
import pwd
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

# Below Linux's ephemeral range (32768-60999): a client's outgoing connection can never take
# such a port while its server is stopped for a restart test.
_PORT_RANGE = (20000, 32000)
# Never the same port twice in one process: a stopped server's port looks free too.
_given: set[int] = set()


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    for _ in range(100):
        port = random.randint(*_PORT_RANGE)
        if port in _given:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_user(user: str | None) -> dict[str, Any]:
    """subprocess keyword arguments that run a child as `user` (None: as ourselves)."""
    if user is None:
        return {}
    account = pwd.getpwnam(user)
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def log_tail(path: Path, lines: int = 40) -> str:
    """The end of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class ServerProcess:
    """A server run as our child: logged to a file, stopped when Python exits, always reaped."""

    name = "server"
    log_name = "server.log"
    stop_signal = signal.SIGTERM

    def __init__(self, data_dir: Path, port: int | None) -> None:
        self.data_dir = data_dir.expanduser().absolute()
        # Chosen once, so that a restart comes back on the same port.
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / self.log_name

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self.running else None

    def start(self) -> str:
        raise NotImplementedError

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the server to shut down and wait for it; kill it after `timeout` seconds."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(self.stop_signal)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._forget()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would, and reap it."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._kill(proc)
        proc.wait()
        self._forget()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.kill()

    def _spawn(self, argv: Sequence[str], *, user: str | None = None) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                # Out of our process group: a terminal's Ctrl-C reaches only us, and we stop
                # the servers last, after everything that uses them.
                start_new_session=True,
                **as_user(user),
            )
        self._proc = proc
        atexit.register(self.stop)
        return proc

    def _wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                self._forget()
                raise RuntimeError(
                    f"{self.name} exited with code {proc.returncode} while starting; "
                    f"end of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(
                    f"{self.name} was not ready after {timeout} s; "
                    f"end of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.01)

    def _forget(self) -> None:
        self._proc = None
        atexit.unregister(self.stop)
