"""A batch of the log as runs: consecutive events of one type written by one set-based statement."""

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
    """How a run of one event type is written: the row each event touches, and the statement.

    Without `folds`, a run ends where a row would be touched a second time (one statement
    cannot update a row twice); with it, the writer folds the events of one row itself.
    """

    key: Callable[[Any], Hashable]
    write: Writer
    folds: bool = False


async def apply_in_runs(
    conn: Db,
    batch: Sequence[RecordedEvent],
    handled: tuple[type[Event], ...],
    batched: dict[type[Event], Batched],
    one: One,
) -> None:
    """Applies batch in log order: a run of a batched type at once, any other event alone.

    Events the projection does not handle are passed over without ending a run: they touch
    none of its rows.
    """
    run: list[RecordedEvent] = []
    run_type: type[Event] | None = None
    keys: set[Hashable] = set()

    async def flush() -> None:
        nonlocal run, run_type
        if run:
            assert run_type is not None
            await batched[run_type].write(conn, run)
        run, run_type = [], None
        keys.clear()

    for recorded in batch:
        kind = type(recorded.event)
        if not issubclass(kind, handled):
            continue
        how = batched.get(kind)
        if how is None:
            await flush()
            await one(conn, recorded)
            continue
        key = how.key(recorded.event)
        if kind is not run_type or (key in keys and not how.folds):
            await flush()
            run_type = kind
        run.append(recorded)
        keys.add(key)
    await flush()
