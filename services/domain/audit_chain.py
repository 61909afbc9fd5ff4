"""The audit hash chain: each event's canonical bytes, chained in log order with SHA-256."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Literal

import msgspec

# The hash before the first event of the log.
GENESIS = bytes(32)
Kind = Literal["altered", "removed", "reordered", "inserted", "anchor"]
_encoder = msgspec.json.Encoder()


class SealedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """What a seal covers of an event: every column that says what happened, when, by whom.

    data and metadata are PostgreSQL's text of the stored jsonb, kept byte for byte (an export
    carries them verbatim), so that nothing is parsed and re-encoded on the way to the hash.
    """

    id: str
    stream_id: str
    version: int
    position: int
    type: str
    data: msgspec.Raw
    metadata: msgspec.Raw
    recorded_at: str


class Seal(msgspec.Struct, frozen=True, kw_only=True):
    """One link of the chain: the event sealed at seq, and the chain's hash after it."""

    seq: int
    position: int
    event_id: str
    hash: bytes


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """The first place where the log (or a copy of it) no longer matches its seals."""

    position: int
    kind: Kind
    message: str


def recorded_text(instant: datetime) -> str:
    """An event's time as sealed: UTC, microseconds, a Z."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(event: SealedEvent) -> bytes:
    """A JSON array of the sealed fields in a fixed order; data and metadata as stored."""
    return _encoder.encode(
        [
            event.id,
            event.stream_id,
            event.version,
            event.position,
            event.type,
            event.data,
            event.metadata,
            event.recorded_at,
        ]
    )


def link(previous: bytes, event: SealedEvent) -> bytes:
    """The chain's hash after event: SHA-256 of the previous hash and the event's bytes."""
    return hashlib.sha256(previous + canonical(event)).digest()


def seal_all(previous: bytes, first_seq: int, events: list[SealedEvent]) -> list[Seal]:
    """Seals events in the order given, continuing a chain whose last hash is previous."""
    seals = []
    for seq, event in enumerate(events, start=first_seq):
        previous = link(previous, event)
        seals.append(Seal(seq=seq, position=event.position, event_id=event.id, hash=previous))
    return seals


def altered(previous: bytes, seal: Seal, event: SealedEvent) -> Problem | None:
    """Whether event, found in the seal's place, differs from what was sealed; None if not."""
    if link(previous, event) == seal.hash:
        return None
    return Problem(
        position=seal.position,
        kind="altered",
        message=f"position {seal.position}: the event ({event.type} {event.id}) was altered "
        f"since it was sealed (seq {seal.seq})",
    )


def misplaced(
    seal: Seal, found: SealedEvent | None, *, still_present: bool, found_sealed: bool
) -> Problem:
    """The log holds `found` (None: nothing) where the seal expects its own event.

    still_present: whether the sealed event is still somewhere in the log; found_sealed:
    whether `found` was sealed at another place of the chain.
    """
    where = f"position {seal.position}: the event sealed there (seq {seal.seq}, {seal.event_id})"
    if found is None or not still_present:
        if found is not None and found.position == seal.position:
            return Problem(
                position=seal.position,
                kind="altered",
                message=f"{where} was replaced by event {found.id}",
            )
        return Problem(position=seal.position, kind="removed", message=f"{where} was removed")
    if found_sealed:
        return Problem(
            position=seal.position,
            kind="reordered",
            message=f"{where} is no longer in its place, event {found.id} of position "
            f"{found.position} is: events were reordered",
        )
    return Problem(
        position=found.position,
        kind="inserted",
        message=f"position {found.position}: event {found.id} was never sealed, yet it comes "
        f"before position {seal.position} in the log: it was inserted",
    )


def anchor_mismatch(position: int, expected: bytes, actual: bytes | None) -> Problem:
    """An anchor kept elsewhere does not match the chain recomputed from the log."""
    found = "no event sealed there" if actual is None else f"the chain reads {actual.hex()}"
    return Problem(
        position=position,
        kind="anchor",
        message=f"position {position}: the anchor says {expected.hex()}, {found}: the log was "
        "rewritten at or before this position",
    )
