"""The whole visible log streamed for a rebuild: one COPY, decoded as it arrives.

PostgreSQL writes the rows into the socket while this process decodes and folds the ones
before (a query per page would leave one of the two idle while the other works). Each row
comes as one JSON array, and a page of them is decoded by one call into msgspec, events and
all (each event's stored data names its type). The rows are the events services/infra/
store.py's read_after would return, in the same order, under the same rule: only rows of
transactions older than every one still running. A row that does not decode so (a type this
code does not know, an older shape to upcast) is decoded as events/codec.py does it, which
makes it an Undecodable when it cannot be read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Union, cast

import msgspec

from events.codec import EVENT_TYPES, RecordedEvent, decode_or_undecodable
from services.infra.store import LOG_HORIZON, Connection

# asyncpg's copy_from_query sends COPY (this) TO STDOUT. The array's order is _Logged's.
_ALL = f"""
SELECT json_build_array(id, stream_id, version, position, tx_id::text::bigint, category,
    recorded_at, data, metadata, type, schema_version)
FROM events
WHERE tx_id < {LOG_HORIZON}
ORDER BY events.tx_id, events.position
"""
# A RecordedEvent whose event decodes as any event type, by the type its data names.
_Logged = msgspec.defstruct(
    "LoggedEvent",
    [
        ("event", Union[tuple(EVENT_TYPES.values())]),  # noqa: UP007
        ("kind", str),
        ("schema_version", int),
    ],
    bases=(RecordedEvent,),
    frozen=True,
    kw_only=True,
    array_like=True,
    gc=False,
)
_page = msgspec.json.Decoder(list[_Logged])  # type: ignore[valid-type]
_CURRENT = {cls: (name, cls.schema_version) for name, cls in EVENT_TYPES.items()}
# A row the page's decoder refused, taken apart to be decoded as events.codec does it.
_Row = tuple[str, str, int, int, int, str, datetime, msgspec.Raw, dict[str, Any], str, int]
_row = msgspec.json.Decoder(_Row)


async def stream(
    conn: Connection, on_page: Callable[[list[RecordedEvent]], None], size: int
) -> None:
    """Every visible event in log order: on_page gets them about `size` at a time, in a
    thread of its own, so that this loop goes on taking in the next page meanwhile (one page
    is taken in while one is folded; the server waits while both are busy)."""
    loop = asyncio.get_running_loop()
    tail = b""
    lines: list[bytes] = []
    folding: asyncio.Future[None] | None = None

    def fold(page: list[bytes]) -> None:
        on_page(decode(page))

    with ThreadPoolExecutor(1, thread_name_prefix="replay-fold") as worker:

        async def take(chunk: bytes) -> None:
            nonlocal tail, lines, folding
            arrived = (tail + chunk).split(b"\n")
            tail = arrived.pop()
            lines.extend(arrived)
            if len(lines) >= size:
                if folding is not None:
                    await folding
                folding = loop.run_in_executor(worker, fold, lines)
                lines = []

        try:
            await conn.copy_from_query(_ALL, output=take)
        finally:
            if folding is not None:
                await folding
        if lines:
            await loop.run_in_executor(worker, fold, lines)


def decode(lines: list[bytes]) -> list[RecordedEvent]:
    """COPY's text rows of _ALL as events."""
    # In COPY's text format a backslash comes doubled, and JSON has no raw control
    # characters for it to escape otherwise.
    page = (b"[" + b",".join(lines) + b"]").replace(b"\\\\", b"\\")
    try:
        events = cast(list[Any], _page.decode(page))
    except (msgspec.DecodeError, ValueError):
        return [_one(line.replace(b"\\\\", b"\\")) for line in lines]
    for index, logged in enumerate(events):
        if _CURRENT[type(logged.event)] != (logged.kind, logged.schema_version):
            events[index] = _one(lines[index].replace(b"\\\\", b"\\"))
    return cast(list[RecordedEvent], events)


def _one(line: bytes) -> RecordedEvent:
    (event_id, stream_id, version, position, tx_id, category, recorded_at, data, metadata,
     kind, schema_version) = _row.decode(line)  # fmt: skip
    return RecordedEvent(
        id=event_id,
        stream_id=stream_id,
        version=version,
        position=position,
        tx_id=tx_id,
        category=category,
        recorded_at=recorded_at,
        event=decode_or_undecodable(kind, bytes(data).decode(), schema_version),
        metadata=metadata,
    )
