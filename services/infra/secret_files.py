"""Files that hold secrets: mode 0600 from the moment they exist, replaced atomically."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

SECRET_MODE = 0o600


def write_secret(path: Path, data: bytes | str) -> None:
    """Writes path so that no other user can ever read it, not even while it is half written.

    The content goes to a new file in the same directory, created with mode 0600 by the open
    itself (a chmod afterwards leaves a moment when the file is readable by all), and is then
    renamed over path: a reader sees the old secret or the new one, never half of one.
    """
    content = data.encode() if isinstance(data, str) else data
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()  # left by a crash of a process that had our pid
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, SECRET_MODE)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


def private_dir(path: Path) -> Path:
    """path, created (with its parents) as a directory only its owner may list or enter; an
    existing one keeps its mode: the files in it are private anyway."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path
