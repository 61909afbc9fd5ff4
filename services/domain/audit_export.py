"""The audit export: sealed events as JSON lines, and checking such a file with nothing else."""

from __future__ import annotations

from typing import Literal

import msgspec

from services.domain.audit_chain import GENESIS, Problem, Seal, SealedEvent, altered

FORMAT = "deployx-audit"


class Header(msgspec.Struct, frozen=True, kw_only=True, tag="header", tag_field="kind"):
    """The first line: where the export starts in the chain, and the hash before it."""

    format: str = FORMAT
    version: int = 1
    after_seq: int
    previous: str


class SealedLine(msgspec.Struct, frozen=True, kw_only=True, tag="sealed", tag_field="kind"):
    seq: int
    hash: str
    event: SealedEvent


class End(msgspec.Struct, frozen=True, kw_only=True, tag="end", tag_field="kind"):
    """The last line: how many events the file holds and the chain's head after them."""

    events: int
    seq: int
    position: int | None
    hash: str


Line = Header | SealedLine | End
_decoder = msgspec.json.Decoder(Line)
_encoder = msgspec.json.Encoder()


def encode_line(line: Line) -> bytes:
    return _encoder.encode(line) + b"\n"


def sealed_line(seal: Seal, event: SealedEvent) -> SealedLine:
    return SealedLine(seq=seal.seq, hash=seal.hash.hex(), event=event)


class Head(msgspec.Struct, frozen=True, kw_only=True):
    """The chain's head: its last seal's seq, position and hash."""

    seq: int
    position: int | None
    hash: str


class FileCheck:
    """Checks an export line by line: seqs consecutive, each hash the link of the one before."""

    def __init__(self) -> None:
        self.previous: bytes | None = None
        self.seq = 0
        self.position: int | None = None
        self.events = 0
        self.ended = False

    def feed(self, number: int, raw: bytes) -> Problem | None:
        try:
            line = _decoder.decode(raw)
        except msgspec.DecodeError as exc:
            return _bad_file(self.position, f"line {number} is not a line of an export: {exc}")
        if self.ended:
            return _bad_file(self.position, f"line {number} follows the end line")
        if isinstance(line, Header):
            return self._header(number, line)
        if self.previous is None:
            return _bad_file(None, "the file does not start with its header line")
        if isinstance(line, End):
            return self._end(line)
        return self._sealed(line)

    def finish(self) -> Problem | None:
        if self.previous is None:
            return _bad_file(None, "the file is empty")
        if not self.ended:
            return _bad_file(self.position, "the file ends without its end line: it was cut short")
        return None

    def head(self) -> Head:
        assert self.previous is not None
        return Head(seq=self.seq, position=self.position, hash=self.previous.hex())

    def _header(self, number: int, header: Header) -> Problem | None:
        if number != 1 or header.format != FORMAT or header.version != 1:
            return _bad_file(None, f"line {number}: not the header of a version 1 {FORMAT} file")
        try:
            self.previous = bytes.fromhex(header.previous)
        except ValueError:
            return _bad_file(None, "the header's previous hash is not hex")
        if header.after_seq == 0 and self.previous != GENESIS:
            return _bad_file(None, "a file from the log's start must begin at the zero hash")
        self.seq = header.after_seq
        return None

    def _sealed(self, line: SealedLine) -> Problem | None:
        assert self.previous is not None
        position = line.event.position
        if line.seq != self.seq + 1:
            kind: Literal["removed", "reordered"] = (
                "removed" if line.seq > self.seq + 1 else "reordered"
            )
            return Problem(
                position=position,
                kind=kind,
                message=f"position {position}: seal {line.seq} follows seal {self.seq}: "
                f"events of the log were {'removed or moved' if kind == 'removed' else kind} "
                "before it",
            )
        try:
            stored = bytes.fromhex(line.hash)
        except ValueError:
            return _bad_file(position, f"position {position}: the seal's hash is not hex")
        seal = Seal(seq=line.seq, position=position, event_id=line.event.id, hash=stored)
        problem = altered(self.previous, seal, line.event)
        if problem is not None:
            return problem
        self.previous, self.seq, self.position = stored, line.seq, position
        self.events += 1
        return None

    def _end(self, end: End) -> Problem | None:
        assert self.previous is not None
        self.ended = True
        if (end.events, end.seq, end.hash) != (self.events, self.seq, self.previous.hex()):
            return _bad_file(
                self.position,
                f"the end line says {end.events} events up to seal {end.seq} ({end.hash}), "
                f"the file holds {self.events} up to seal {self.seq} ({self.previous.hex()}): "
                "events were removed or added at its end",
            )
        return None


def _bad_file(position: int | None, message: str) -> Problem:
    return Problem(position=position or 0, kind="altered", message=message)
