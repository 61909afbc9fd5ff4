"""PgBouncer in transaction mode in front of a test's database: Debian's pgbouncer package
(scripts/test installs it), started as the embedded PostgreSQL's user under root."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from services.infra.embedded import as_user, free_port, log_tail
from services.infra.embedded_postgres import SYSTEM_USER

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
# Few server connections, so that clients really do share them between transactions.
POOL_SIZE = 3

_CONFIG = """
[databases]
* = host={host} port={port} user={user}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = {pool}
max_client_conn = 500
logfile = {dir}/pgbouncer.log
pidfile = {dir}/pgbouncer.pid
"""


@contextlib.contextmanager
def pgbouncer(database_url: str) -> Iterator[str]:
    """The database_url's database through PgBouncer (transaction mode): its DSN."""
    target = urlsplit(database_url)
    directory = Path(tempfile.mkdtemp(prefix="deployx-pgbouncer-"))
    listen = free_port()
    (directory / "pgbouncer.ini").write_text(
        _CONFIG.format(
            host=target.hostname,
            port=target.port,
            user=target.username,
            listen=listen,
            pool=POOL_SIZE,
            dir=directory,
        )
    )
    user = SYSTEM_USER if os.geteuid() == 0 else None  # it refuses to run as root
    if user is not None:
        account = pwd.getpwnam(user)
        os.chown(directory, account.pw_uid, account.pw_gid)
    proc = subprocess.Popen(
        [PGBOUNCER, str(directory / "pgbouncer.ini")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **as_user(user),
    )
    try:
        deadline = time.monotonic() + 15
        while not _listening(listen):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"pgbouncer did not start:\n{log_tail(directory / 'pgbouncer.log')}"
                )
            time.sleep(0.05)
        yield f"postgresql://{target.username}@127.0.0.1:{listen}{target.path}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
