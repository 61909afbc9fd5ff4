"""The backup file: JSON lines, a header, one section per table, a checksummed end line."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Literal

import msgspec

FORMAT = "deployx-backup"
VERSION = 1
# What a section holds, and so how restore loads it: the log (tx_ids rewritten), the audit
# chain (verbatim, after the log), a table kept as it is, or the readers' checkpoints.
Role = Literal["log", "seals", "kept", "checkpoints"]


class Header(msgspec.Struct, frozen=True, kw_only=True, tag="header", tag_field="kind"):
    """The first line: the file's format, the schema the rows were written under, and when."""

    format: str = FORMAT
    version: int = VERSION
    taken_at: datetime
    server_version: str
    # The source database's schema: its migration steps applied (docs/upgrades.md).
    schema_step: int


class Section(msgspec.Struct, frozen=True, kw_only=True, tag="table", tag_field="kind"):
    """A table's rows follow: exactly `rows` lines, each one row as PostgreSQL's to_jsonb."""

    name: str
    role: Role
    columns: list[str]
    rows: int


class Sequences(msgspec.Struct, frozen=True, kw_only=True, tag="sequences", tag_field="kind"):
    """Every sequence's last value (None: never used)."""

    values: dict[str, int | None]


class End(msgspec.Struct, frozen=True, kw_only=True, tag="end", tag_field="kind"):
    """The last line: rows per table, the log's runs (see restore), and the SHA-256 of every
    byte before this line, so that a truncated or damaged file is refused before it loads."""

    rows: dict[str, int]
    runs: int
    sha256: str


Line = Header | Section | Sequences | End
_decoder = msgspec.json.Decoder(Line)
_encoder = msgspec.json.Encoder()


class DamagedBackup(Exception):
    """The file is not a complete backup as `deployx backup` wrote it."""


class Writer:
    """Writes lines to a file of mode 0600 (it holds token hashes and webhook secrets) under a
    temporary name, renamed into place only once the end line is written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._temp = path.with_name(f".{path.name}.{os.getpid()}.partial")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        self._file: BinaryIO = open(os.open(self._temp, flags, 0o600), "wb")  # noqa: SIM115
        self._hash = hashlib.sha256()

    def line(self, line: Header | Section | Sequences) -> None:
        self.raw(_encoder.encode(line))

    def raw(self, row: bytes) -> None:
        data = row + b"\n"
        self._hash.update(data)
        self._file.write(data)

    def finish(self, rows: dict[str, int], runs: int) -> End:
        end = End(rows=rows, runs=runs, sha256=self._hash.hexdigest())
        self._file.write(_encoder.encode(end) + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._temp, self.path)
        return end

    def abandon(self) -> None:
        self._file.close()
        self._temp.unlink(missing_ok=True)


def decode(raw: bytes) -> Line:
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise DamagedBackup(f"not a line of a DeployX backup: {exc}") from None


def check(path: Path) -> tuple[Header, End]:
    """Reads the whole file once: its header, its end line, and that the checksum matches."""
    digest = hashlib.sha256()
    header: Header | None = None
    last = b""
    with path.open("rb") as file:
        for raw in file:
            if last:
                digest.update(last)
            last = raw
            if header is None:
                first = decode(raw)
                if not isinstance(first, Header) or first.format != FORMAT:
                    raise DamagedBackup(f"{path} is not a DeployX backup")
                if first.version > VERSION:
                    raise DamagedBackup(
                        f"{path} is a backup of format {first.version}; this version reads "
                        f"format {VERSION} only: restore it with a newer DeployX"
                    )
                header = first
    end = decode(last) if last else None
    if header is None or not isinstance(end, End):
        raise DamagedBackup(f"{path} ends before its end line: the backup is incomplete")
    if digest.hexdigest() != end.sha256:
        raise DamagedBackup(f"{path} does not match its checksum: the file was damaged")
    return header, end


class Reader:
    """The lines of a checked file in order: sections hand out their rows as raw bytes."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    def __iter__(self) -> Iterator[Line]:
        for raw in self._file:
            yield decode(raw)

    def rows(self, section: Section, batch: int) -> Iterator[list[bytes]]:
        """The section's rows, `batch` at a time."""
        left = section.rows
        while left:
            chunk = [self._file.readline().rstrip(b"\n") for _ in range(min(batch, left))]
            if not all(chunk):
                raise DamagedBackup(f"section {section.name} ends early")
            left -= len(chunk)
            yield chunk
