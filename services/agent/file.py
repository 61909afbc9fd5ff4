"""Runs a file job: streams the file from the file server beside its destination, verifies,
renames."""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from services.agent.file_fetch import FetchFailed, FileFetcher, fetch_verified
from services.agent.protocol import JobOutcome
from services.domain.kinds.file import FilePayload

if TYPE_CHECKING:
    from services.agent.dispatch import JobContext


def check_destination(destination: str, allow_roots: list[Path]) -> Path:
    """The real path that will be written (parent symlinks followed); ValueError if refused."""
    path = Path(destination)
    if not path.is_absolute() or path.name in ("", ".", ".."):
        raise ValueError(f"destination {destination!r} is not an absolute path to a file")
    real = path.parent.resolve() / path.name
    roots = [root.resolve() for root in allow_roots]
    if roots and not any(real.is_relative_to(root) for root in roots):
        shown = ", ".join(str(root) for root in roots)
        raise ValueError(f"destination {destination} is outside the allowed roots ({shown})")
    if real.is_dir():
        raise ValueError(f"destination {destination} is a directory")
    return real


def parse_owner(owner: str | None) -> tuple[int, int]:
    """An owner "user" or "user:group" (names or ids) as (uid, gid); -1 leaves one unchanged."""
    if not owner:
        return -1, -1
    user, _, group = owner.partition(":")
    try:
        uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid if user else -1
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid if group else -1
    except KeyError:
        raise ValueError(f"owner {owner!r}: no such user or group on this device") from None
    return uid, gid


def _open_temp(real: Path) -> tuple[BinaryIO, Path]:
    """A new temp file in the destination's directory (created with its parents)."""
    real.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".deployx-tmp")
    return os.fdopen(fd, "wb"), Path(name)


def _put_in_place(
    target: BinaryIO, tmp: Path, real: Path, mode: int, owner: tuple[int, int]
) -> None:
    """Owner first (chown clears setuid bits), then mode, fsync, rename, fsync the directory."""
    target.flush()
    if owner != (-1, -1):
        os.fchown(target.fileno(), *owner)
    os.fchmod(target.fileno(), mode)
    os.fsync(target.fileno())
    os.replace(tmp, real)
    directory = os.open(real.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


async def run(payload: FilePayload, context: JobContext) -> JobOutcome:
    """The file deployment kind's runner."""
    return await deploy_file(payload, context.fetcher(), context.allow_roots)


async def deploy_file(
    payload: FilePayload, fetcher: FileFetcher, allow_roots: list[Path]
) -> JobOutcome:
    """Runs a file_payload: file_id (the object's name), destination, mode, owner.

    An empty allow_roots allows any destination (the demo's default); an agent started with
    --allow-root refuses destinations outside those directories.
    """
    file_id, timeout = payload.file_id, payload.timeout_seconds
    try:
        real = check_destination(payload.destination, allow_roots)
        mode = int(payload.mode, 8)
        owner = parse_owner(payload.owner)
    except ValueError as exc:
        return JobOutcome(status="failed", error=str(exc))
    try:
        target, tmp = await asyncio.to_thread(_open_temp, real)
    except OSError as exc:
        return JobOutcome(status="failed", error=f"cannot write beside {real}: {exc}")
    placed = False
    try:
        with target:
            try:
                fetched = await fetch_verified(fetcher, file_id, target, timeout)
            except FetchFailed as failed:
                return failed.outcome
            await asyncio.to_thread(_put_in_place, target, tmp, real, mode, owner)
            placed = True
    except OSError as exc:
        return JobOutcome(status="failed", error=f"cannot write {real}: {exc}")
    finally:
        if not placed:
            tmp.unlink(missing_ok=True)
    details = {"sha256": fetched.sha256, "size": fetched.size, "destination": str(real)}
    return JobOutcome(status="success", details=details)
