"""A batch of the log in waves: the events of one type in a wave go in one set-based statement."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from events.base import Event
from events.codec import RecordedEvent
from projections.base import Db

# Rows travel to PostgreSQL as one JSON array read by json_to_recordset: one parameter and one
# statement for a whole run, whatever its length (arrays of arrays need no special casing).
_json = msgspec.json.Encoder()


def rows_json(rows: list[dict[str, Any]]) -> str:
    return _json.encode(rows).decode()


Writer = Callable[[Db, list[RecordedEvent]], Awaitable[None]]
One = Callable[[Db, RecordedEvent], Awaitable[None]]


@dataclass(frozen=True)
class Batched:
    """How events of one type are written together: every row an event's statement touches
    (as keys; a coarse key may stand for many rows), and the statement.

    Without `folds`, two events of the type touching one row are never written by the same
    statement (a statement cannot update a row twice); with it, the writer folds them itself.
    """

    keys: Callable[[Any], tuple[Hashable, ...]]
    write: Writer
    folds: bool = False


async def apply_in_runs(
    conn: Db,
    batch: Sequence[RecordedEvent],
    handled: tuple[type[Event], ...],
    batched: dict[type[Event], Batched],
    one: One,
) -> None:
    """Applies batch as its events one by one would, in as few statements as it can.

    Events go into a wave until one touches a row an event of another type in the wave
    touched (or, unless its type folds, one of its own type): then the wave is written, one
    statement per type, and a new one begins. Within a wave no row is touched by two types,
    so the order of the statements does not matter. An event of a type without a batched
    statement is applied alone, between waves; events the projection does not handle are
    passed over (they touch none of its rows).
    """
    wave: dict[type[Event], list[RecordedEvent]] = {}
    touched: dict[Hashable, type[Event]] = {}

    async def flush() -> None:
        for kind, events in wave.items():
            await batched[kind].write(conn, events)
        wave.clear()
        touched.clear()

    for recorded in batch:
        kind = type(recorded.event)
        if not issubclass(kind, handled):
            continue
        how = batched.get(kind)
        if how is None:
            await flush()
            await one(conn, recorded)
            continue
        keys = how.keys(recorded.event)
        if any(key in touched and (touched[key] is not kind or not how.folds) for key in keys):
            await flush()
        wave.setdefault(kind, []).append(recorded)
        for key in keys:
            touched[key] = kind
    await flush()
