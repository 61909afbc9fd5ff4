"""A batch of the log in waves: the events of one type in a wave go in one set-based statement."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from events.base import Event
from events.codec import UPCASTERS, RecordedEvent
from projections.base import Db

# Rows travel to PostgreSQL as one JSON array read by json_to_recordset: one parameter and one
# statement for a whole run, whatever its length (arrays of arrays need no special casing).
_json = msgspec.json.Encoder()


def json_text(value: object) -> str:
    """A value as the JSON text a statement's parameter carries (a jsonb column, a recordset):
    the live statements and the folds of a replay send the very same text."""
    return _json.encode(value).decode()


def rows_json(rows: list[dict[str, Any]]) -> str:
    return json_text(rows)


def from_log(columns: str) -> str:
    """SQL rows of the events at positions $1 (bigint[]) read from the log itself, as
    `e.version` and `x.<column>`: PostgreSQL takes each field from the stored jsonb, so no
    event's JSON is decoded, encoded and parsed again on the way. $2 (jsonb, from
    `log_defaults`) fills the fields an event stored before they existed leaves out, as
    decoding it would."""
    return (
        f"events AS e, jsonb_to_record($2::jsonb || e.data) AS x({columns}) "
        "WHERE e.position = ANY($1::bigint[])"
    )


def log_defaults(kind: type[Event]) -> str:
    """The defaults of kind's fields as JSON (the $2 of `from_log`)."""
    defaults: dict[str, Any] = {}
    for field in msgspec.structs.fields(kind):
        if field.default is not msgspec.NODEFAULT:
            defaults[field.encode_name] = field.default
        elif field.default_factory is not msgspec.NODEFAULT:
            defaults[field.encode_name] = field.default_factory()
    return _json.encode(defaults).decode()


def stored_as_decoded(kind: type[Event]) -> bool:
    """Whether kind's stored JSON reads as it decodes (no upcaster reshapes an older version):
    then its rows may be read from the log (`from_log`) instead of from the decoded events."""
    tag = kind.__struct_config__.tag
    return not any(event_type == tag for event_type, _ in UPCASTERS)


Writer = Callable[[Db, list[RecordedEvent]], Awaitable[None]]
One = Callable[[Db, RecordedEvent], Awaitable[None]]

E = TypeVar("E", bound=Event)


def json_rows_writer(
    statement: str,
    kind: type[E],
    row: Callable[[E, RecordedEvent], dict[str, Any]],
    *args: object,
) -> Writer:
    """A Writer that sends a run of kind's events to statement as one JSON array ($1, read by
    json_to_recordset), a row(event, recorded) each; args are $2 onwards."""

    async def write(conn: Db, run: list[RecordedEvent]) -> None:
        rows = []
        for recorded in run:
            event = recorded.event
            assert isinstance(event, kind)
            rows.append(row(event, recorded))
        await conn.execute(statement, rows_json(rows), *args)

    return write


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
