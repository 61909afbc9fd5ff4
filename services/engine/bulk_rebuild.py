"""The bulk of a rebuild: the log folded in memory and each shadow table written once by COPY.

The statements the live projector applies batch by batch cost PostgreSQL far more per event
than a fold in Python and one COPY per table (bench/README.md, "Projections at scale"). This
reads the visible log in large pages, folds each event into every projection that has a fold
(projections/folds.py), writes the rows into the empty shadow tables before their keys and
indexes exist, and sets each copy's checkpoint at the last event read; the live projector's
catch_up then carries the copies on from there (replay.py).

Dead letters come out as the projector would set them aside: an event no code can read is set
aside, and every later event of its stream waits behind it. A projection whose rows its tables
refuse (a value out of a column's range: the projector would set that event aside) is left
empty, without a checkpoint: catch_up then rebuilds it from the start with its statements, and
sets the event aside exactly as the live projector does.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import structlog

from events.base import Event
from events.codec import EVENT_TYPES, RecordedEvent, Undecodable
from projections.base import Projection
from projections.fold import Fold
from projections.folds import fold_for
from services.engine import log_pages, shadow
from services.engine.projector import WAITS_BEHIND, UndecodableEvent
from services.infra import dead_letters
from services.infra.store import Connection, LogCursor, save_checkpoint

log = structlog.get_logger(__name__)

# A row the tables would not take: PostgreSQL's refusal, or asyncpg's before sending it (an
# int out of a column's range, a malformed uuid).
REFUSED: tuple[type[Exception], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    OverflowError,
    ValueError,
    TypeError,
)
# Events decoded and folded together as the log streams in.
READ_PAGE = 20_000


@dataclass
class Folding:
    """A projection being folded: its rebuild name (checkpoint, dead letters) and its fold."""

    projection: Projection
    fold: Fold
    set_aside: list[tuple[RecordedEvent, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return shadow.shadow_name(self.projection)


async def zone_of(conn: Connection) -> ZoneInfo | None:
    name = str(await conn.fetchval("SHOW TimeZone"))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def folds(projections: Sequence[Projection], zone: ZoneInfo | None) -> list[Folding]:
    """The projections that can be folded here (hours are cut in a zone Python knows)."""
    found = []
    for projection in projections:
        fold = fold_for(projection.name, zone) if zone is not None else None
        if fold is not None:
            found.append(Folding(projection, fold))
    return found


async def load(
    conn: Connection,
    folding: list[Folding],
    on_progress: Callable[[int], None] | None = None,
    took: Callable[[str], None] | None = None,
) -> tuple[list[str], int]:
    """Folds the visible log into each of folding and writes their shadow tables (which must
    be empty and without keys): the names of the projections written (checkpoint set), and
    the events read."""
    if not folding:
        return [], 0
    parked: set[str] = set()
    cursor = LogCursor()
    read = 0
    routes = _routes(folding)
    # The fold makes millions of objects that form no cycles: the collector would only walk them.
    gc.disable()
    try:

        def fold_page(events: list[RecordedEvent]) -> None:
            nonlocal cursor, read
            _fold_page(events, folding, routes, parked)
            cursor = LogCursor.of(events[-1])
            read += len(events)
            if on_progress is not None:
                on_progress(len(events) * len(folding))

        await log_pages.stream(conn, fold_page, READ_PAGE)
        if took is not None:
            took("fold")
        written = [f.projection.name for f in folding if await _write(conn, f, cursor)]
        if took is not None:
            took("copy")
        return written, read
    finally:
        gc.enable()


Routes = dict[type[Event], list[Callable[[RecordedEvent], None]]]


def _routes(folding: list[Folding]) -> Routes:
    """For each event class, the folds it changes."""
    routes: Routes = {}
    for f in folding:
        for kind in f.fold.handled:
            routes.setdefault(EVENT_TYPES[kind], []).append(f.fold.evolve)
    return routes


def _fold_page(
    events: list[RecordedEvent],
    folding: list[Folding],
    routes: Routes,
    parked: set[str],
) -> None:
    for recorded in events:
        if parked and recorded.stream_id in parked:
            for f in folding:
                f.set_aside.append((recorded, WAITS_BEHIND))
            continue
        event = recorded.event
        if isinstance(event, Undecodable):
            error = dead_letters.describe_failure(UndecodableEvent(event.error))
            log.error(
                "event_set_aside",
                position=recorded.position,
                event_type=event.event_type,
                stream_id=recorded.stream_id,
                error=error,
            )
            for f in folding:
                f.set_aside.append((recorded, error))
            parked.add(recorded.stream_id)
            continue
        for evolve in routes.get(type(event), ()):
            evolve(recorded)


async def _write(conn: Connection, folding: Folding, cursor: LogCursor) -> bool:
    """One transaction: the fold's rows, its dead letters and its checkpoint; False (and
    nothing written) when the tables refuse a row."""
    try:
        async with conn.transaction():
            for rows in folding.fold.rows():
                await _check_columns(conn, rows.table, rows.columns)
                await conn.copy_records_to_table(
                    rows.table,
                    records=rows.records,
                    columns=list(rows.columns),
                    schema_name=shadow.SHADOW,
                )
            for recorded, error in folding.set_aside:
                await dead_letters.set_aside(conn, folding.name, recorded, error)
            await save_checkpoint(conn, folding.name, cursor)
    except REFUSED as exc:
        log.warning(
            "projection_fold_refused",
            projection=folding.projection.name,
            error=dead_letters.describe_failure(exc),
        )
        return False
    return True


async def _check_columns(conn: Connection, table: str, columns: Sequence[str]) -> None:
    """A fold must write every column of its table: one it does not know means the table
    grew and the fold was not taught (its rows would silently get the default)."""
    have = await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 "
        "AND NOT attisdropped",
        f"{shadow.SHADOW}.{table}",
    )
    missing = {row["attname"] for row in have} - set(columns)
    if missing:
        raise RuntimeError(
            f"replay: the fold of {table} does not write its columns {', '.join(sorted(missing))}"
        )
