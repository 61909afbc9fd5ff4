"""Dropping root: an agent started as root becomes an unprivileged user before it takes jobs."""

from __future__ import annotations

import contextlib
import importlib
import os
import pwd
import stat
from pathlib import Path

# Modules Python imports lazily, on first use, that an agent uses only once jobs run: once we
# are another user, the interpreter's own directory may be out of reach (/root is 0700).
PRELOAD = (
    "concurrent.futures.thread",  # asyncio.to_thread's default executor
    "encodings.idna",  # host names given to getaddrinfo
    "encodings.ascii",
    "encodings.latin_1",
    "asyncio.subprocess",
    "asyncio.unix_events",
    "email.parser",  # NATS message headers
    "sqlite3.dbapi2",
    "uuid",
)
OPTIONAL = ("nkeys",)  # nats-py imports it at connect time for .creds (JWT) logins


def become(user: str, state_dir: Path) -> None:
    """Runs this process as `user` from now on, in state_dir, which is made that user's own.

    Call it once credentials are read: afterwards only what `user` may read is readable. A
    process that already runs as `user` only changes into state_dir.
    """
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise SystemExit(f"--run-as {user}: no such user on this device") from None
    state_dir = state_dir.expanduser().absolute()
    if os.geteuid() == account.pw_uid:
        state_dir.mkdir(parents=True, exist_ok=True)
        os.chdir(state_dir)
        return
    if os.geteuid() != 0:
        raise SystemExit(f"--run-as {user}: only root may become another user")
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _let_through(state_dir)
    _hand_over(state_dir, account.pw_uid, account.pw_gid)
    for module in PRELOAD:
        importlib.import_module(module)
    for module in OPTIONAL:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    os.setgroups([])
    os.setgid(account.pw_gid)
    os.setuid(account.pw_uid)
    os.chdir(state_dir)
    os.environ.update(HOME=str(state_dir), USER=user, LOGNAME=user)


def _let_through(state_dir: Path) -> None:
    """Each directory above state_dir may be passed through (not listed) by other users."""
    for parent in state_dir.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _hand_over(state_dir: Path, uid: int, gid: int) -> None:
    """state_dir, and the files root left in it (a journal from a run as root), become uid's.

    Only plain files root owns with a single link: anything else there was put by a job of the
    user, and chown-ing a link it planted would hand it whatever the link points to.
    """
    os.chown(state_dir, uid, gid, follow_symlinks=False)
    state_dir.chmod(0o700)
    for entry in os.scandir(state_dir):
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISREG(info.st_mode) and info.st_uid == 0 and info.st_nlink == 1:
            os.chown(entry.path, uid, gid, follow_symlinks=False)
