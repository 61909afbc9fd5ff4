"""Keeps read tables caught up with the log: each projection's rows and checkpoint move together."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

import asyncpg
import structlog

from events.codec import RecordedEvent, Undecodable
from projections import PROJECTIONS, Projection
from services.infra import dead_letters
from services.infra.clock import Backoff, wait_first
from services.infra.db import UNAVAILABLE, describe, reconnect_backoff
from services.infra.dead_letters import FailureCounter
from services.infra.listen import Listener
from services.infra.store import (
    EVENTS_CHANNEL,
    PROJECTED_CHANNEL,
    Connection,
    LogCursor,
    has_events_past,
    load_checkpoint,
    never_appending,
    read_after,
    read_positions,
    save_checkpoint,
)

log = structlog.get_logger(__name__)

# Errors that say nothing about the event: the same batch is simply tried again.
TRANSIENT: tuple[type[Exception], ...] = (*UNAVAILABLE, asyncpg.TransactionRollbackError)
WAITS_BEHIND = "waits behind an earlier event of its stream that was set aside"
# Events a projection takes in one transaction: large enough that a backlog is worked off in
# few set-based statements, small enough that a transaction stays well under a second.
BATCH_SIZE = 2000


class UndecodableEvent(Exception):
    """A row of the log this code cannot read: it must not be skipped silently."""


class EventFailed(Exception):
    """An event failed alone and has attempts left: its batch is tried again shortly.

    Logged as one line (the event and the error): a full traceback of each try says nothing
    more and, rendered with its locals, held the loop for seconds on a busy machine.
    """


async def apply_one(conn: Connection, projection: Projection, recorded: RecordedEvent) -> None:
    if isinstance(recorded.event, Undecodable):
        raise UndecodableEvent(recorded.event.error)
    await projection.apply(conn, recorded)


async def _lock(conn: Connection, projection: Projection) -> None:
    # An advisory lock, not SELECT ... FOR UPDATE: it serialises replicas of the projector
    # without giving this transaction an xid, which would hold back other readers' view.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('projection:' || $1))", projection.name
    )


class Reads:
    """Batches read in this round of catch_up, by the cursor they follow: projections at the
    same checkpoint (the usual case) share one read and one decode of the log."""

    def __init__(self) -> None:
        self._after: dict[LogCursor, list[RecordedEvent]] = {}

    async def after(self, conn: Connection, cursor: LogCursor, limit: int) -> list[RecordedEvent]:
        # A batch read earlier is still right: every event in it was below the log's horizon
        # then (store.LOG_HORIZON), so nothing can appear between them later.
        events = self._after.get(cursor)
        if events is None or len(events) > limit:
            events = self._after[cursor] = await read_after(conn, cursor, limit)
        return events


async def apply_batch(
    conn: Connection,
    projection: Projection,
    batch_size: int,
    failures: FailureCounter | None = None,
    reads: Reads | None = None,
) -> list[RecordedEvent]:
    """One transaction: read the next batch after the checkpoint, apply it, move the checkpoint.

    The batch goes to the projection's apply_batch (set-based statements). With `failures`,
    each event is applied alone in its own savepoint instead, and one that has failed too
    often is set aside as a dead letter (with the later events of its stream).
    """
    async with never_appending(conn):
        await _lock(conn, projection)
        cursor = await load_checkpoint(conn, projection.name)
        events = await (reads or Reads()).after(conn, cursor, batch_size)
        if not events:
            return events
        parked = await dead_letters.parked_streams(
            conn, projection.name, (recorded.stream_id for recorded in events)
        )
        if failures is None and not parked:
            for recorded in events:
                if isinstance(recorded.event, Undecodable):
                    raise UndecodableEvent(recorded.event.error)
            await projection.apply_batch(conn, events)
        else:
            await _apply_one_by_one(conn, projection, events, parked, failures)
        last = LogCursor.of(events[-1])
        await save_checkpoint(conn, projection.name, last)
        await conn.execute(
            "SELECT pg_notify($1, $2)",
            PROJECTED_CHANNEL,
            f"{projection.name}:{last.tx_id}:{last.position}",
        )
        return events


# The checkpoints of several projections in one statement (the locks were taken before it, by
# another statement: one that waited for a lock would still read with the snapshot it began with).
# The admins' retries of set-aside events are looked for at most this often (seconds): on every
# round while appends come back to back would be a query per round for what is rare; an idle
# projector's next round (at most 5 s away) looks at once.
DEAD_LETTERS_EVERY = 1.0
_LOAD_CHECKPOINTS = """
SELECT n.name, c.tx_id::text::bigint AS tx_id, c.position
FROM unnest($1::text[]) AS n(name) LEFT JOIN checkpoints c ON c.name = n.name
"""
# Every projection's checkpoint to the same place, and its announcement, in one statement.
_SAVE_CHECKPOINTS = """
WITH saved AS (
    INSERT INTO checkpoints (name, tx_id, position, updated_at)
    SELECT name, $2::text::xid8, $3, now() FROM unnest($1::text[]) AS n(name)
    ON CONFLICT (name) DO UPDATE SET tx_id = EXCLUDED.tx_id,
        position = EXCLUDED.position, updated_at = EXCLUDED.updated_at
    RETURNING name
)
SELECT count(pg_notify($4, name || ':' || $2 || ':' || $3)) FROM saved
"""


async def apply_together(
    conn: Connection, projections: tuple[Projection, ...], batch_size: int, reads: Reads
) -> list[RecordedEvent] | None:
    """One transaction for all of projections: one read, one commit, one set of round trips.

    The usual case (every projection at the same checkpoint, no event of the batch is
    undecodable or waits behind a dead letter): each projection's apply_batch, then every
    checkpoint moves to the batch's end. Otherwise None, having written nothing: the caller
    goes projection by projection (apply_batch), which deals with those cases. An error of a
    projection's statements undoes the whole transaction; the caller goes on the same way.
    """
    names = sorted(projection.name for projection in projections)
    async with never_appending(conn):
        # In name order: two processes taking several never wait for each other in a circle.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('projection:' || name)) "
            "FROM unnest($1::text[]) AS name",
            names,
        )
        rows = await conn.fetch(_LOAD_CHECKPOINTS, names)
        cursors = {LogCursor(row["tx_id"] or 0, row["position"] or 0) for row in rows}
        if len(cursors) != 1:
            return None
        events = await reads.after(conn, cursors.pop(), batch_size)
        if not events:
            return events
        if any(isinstance(recorded.event, Undecodable) for recorded in events):
            return None
        if await dead_letters.any_parked(conn, names, (recorded.stream_id for recorded in events)):
            return None
        for projection in projections:
            await projection.apply_batch(conn, events)
        last = LogCursor.of(events[-1])
        await conn.execute(
            _SAVE_CHECKPOINTS, names, str(last.tx_id), last.position, PROJECTED_CHANNEL
        )
        return events


async def _apply_one_by_one(
    conn: Connection,
    projection: Projection,
    events: list[RecordedEvent],
    parked: set[str],
    failures: FailureCounter | None,
) -> None:
    for recorded in events:
        if recorded.stream_id in parked:
            await dead_letters.set_aside(conn, projection.name, recorded, WAITS_BEHIND)
            continue
        try:
            async with conn.transaction():  # a savepoint: a failure undoes this event only
                await apply_one(conn, projection, recorded)
        except TRANSIENT:
            raise
        except Exception as exc:
            if failures is not None and not failures.failed(recorded.id):
                raise EventFailed(
                    f"{projection.name}: {recorded.type} at position {recorded.position} "
                    f"(stream {recorded.stream_id}): {dead_letters.describe_failure(exc)}"
                ) from None
            error = dead_letters.describe_failure(exc)
            log.error(
                "event_set_aside",
                projection=projection.name,
                position=recorded.position,
                event_type=recorded.type,
                stream_id=recorded.stream_id,
                error=error,
            )
            await dead_letters.set_aside(conn, projection.name, recorded, error)
            parked.add(recorded.stream_id)
        else:
            if failures is not None:
                failures.forget(recorded.id)


async def catch_up(
    conn: Connection,
    projections: tuple[Projection, ...] = PROJECTIONS,
    batch_size: int = BATCH_SIZE,
    on_applied: Callable[[int], None] | None = None,
    failures: FailureCounter | None = None,
) -> int:
    """Applies every visible event to every projection; returns how many events were applied.

    The projections take turns, one batch each, so that those at the same checkpoint share
    each read of the log. A batch that fails is tried again event by event, so that only a
    poison event is held up (and set aside once `failures` says it has had its chances;
    without it, at once).
    """
    applied = 0
    behind = list(projections)
    while behind:
        reads = Reads()
        together: list[RecordedEvent] | None = None
        try:
            together = await apply_together(conn, tuple(behind), batch_size, reads)
        except TRANSIENT:
            raise
        except Exception as exc:
            log.warning(
                "batch_failed_together",
                projections=[projection.name for projection in behind],
                error=dead_letters.describe_failure(exc),
            )
        if together is not None:
            applied += len(together) * len(behind)
            if on_applied is not None and together:
                for _ in behind:
                    on_applied(len(together))
            if len(together) < batch_size:
                behind.clear()
            continue
        for projection in list(behind):
            events: list[RecordedEvent] | None
            try:
                events = await apply_batch(conn, projection, batch_size, reads=reads)
            except TRANSIENT:
                raise
            except Exception as exc:
                log.warning(
                    "batch_failed_applying_one_by_one",
                    projection=projection.name,
                    error=dead_letters.describe_failure(exc),
                )
                events = None
            if events is None:  # outside the except: its error is not chained to this one's
                events = await apply_batch(
                    conn, projection, batch_size, failures or FailureCounter(1)
                )
            applied += len(events)
            if on_applied is not None and events:
                on_applied(len(events))
            if len(events) < batch_size:
                behind.remove(projection)
    return applied


async def run_projector(
    pool: asyncpg.Pool,
    stop: asyncio.Event,
    projections: tuple[Projection, ...] = PROJECTIONS,
    *,
    session_url: str | None = None,
) -> None:
    """The projector service: catch up, then again on every append (LISTEN is only a wake-up)."""
    wake = asyncio.Event()
    listener = Listener(
        pool,
        EVENTS_CHANNEL,
        on_notify=lambda _: wake.set(),
        on_gap=wake.set,
        session_url=session_url,
    )
    await listener.start()
    # Imported here: a rebuild runs this module's catch_up on shadow tables.
    from services.engine.blue_green import keep_versions

    upgrading = asyncio.create_task(keep_versions(pool, stop, projections, session_url))
    retry = Backoff(first=0.002, limit=0.1)
    failures = Backoff(first=0.5, limit=30.0)
    poison = FailureCounter()
    outage = reconnect_backoff()
    letters_checked = -math.inf
    try:
        while not stop.is_set():
            wake.clear()
            try:
                async with pool.acquire() as conn:
                    if time.monotonic() - letters_checked >= DEAD_LETTERS_EVERY:
                        await retry_dead_letters(conn, projections)
                        letters_checked = time.monotonic()
                    applied = await catch_up(conn, projections, failures=poison)
                    failures.reset()
                    outage.reset()
                    if applied:
                        retry.reset()
                    if applied and wake.is_set():
                        continue
                    # A committed event may be held back behind an older open transaction whose
                    # commit sends no wake-up: look again soon instead of waiting for one. After
                    # a round that applied events this is also all that is left to look for (an
                    # append committed since sent a wake-up): no second round to find nothing.
                    held_back = await has_events_past(conn, [p.name for p in projections])
            except UNAVAILABLE as exc:
                # The database is away (the checkpoint did not move): look again shortly.
                log.warning("projection_failed", error=describe(exc))
                await wait_first(stop, timeout=outage.next())
                continue
            except EventFailed as exc:
                log.error("projection_failed", error=str(exc))
                await wait_first(stop, timeout=failures.next())
                continue
            except Exception:
                # The checkpoint did not move: the same batch is tried again, shortly, and an
                # event that keeps failing is set aside (catch_up) so the rest carries on.
                log.exception("projection_failed")
                await wait_first(stop, timeout=failures.next())
                continue
            if held_back:
                if not applied:
                    await asyncio.sleep(retry.next())
                continue
            retry.reset()
            await wait_first(wake, stop, timeout=5.0)
    finally:
        upgrading.cancel()
        await asyncio.gather(upgrading, return_exceptions=True)
        await listener.stop()


async def retry_dead_letters(conn: Connection, projections: tuple[Projection, ...]) -> None:
    """Applies again the streams whose dead letters an admin asked to retry, each in its order."""
    by_name = {projection.name: projection for projection in projections}
    requested = await dead_letters.retry_requested(conn, by_name)
    for consumer, stream_id in dict.fromkeys((d.consumer, d.stream_id) for d in requested):
        await _retry_stream(conn, by_name[consumer], stream_id)


async def _retry_stream(conn: Connection, projection: Projection, stream_id: str) -> None:
    # The fix may have been a schema change (a wider column): statements prepared before it
    # would still encode for the old one.
    await conn.reload_schema_state()
    async with never_appending(conn):
        await _lock(conn, projection)
        letters = await dead_letters.open_in_stream(conn, projection.name, stream_id)
        events = await read_positions(conn, [letter.position for letter in letters])
        done: list[int] = []
        for letter, recorded in zip(letters, events, strict=True):
            try:
                async with conn.transaction():
                    await apply_one(conn, projection, recorded)
            except TRANSIENT:
                raise
            except Exception as exc:
                await dead_letters.failed_again(conn, letter.id, dead_letters.describe_failure(exc))
                break
            done.append(letter.id)
        await dead_letters.resolve(conn, done)
    log.info(
        "dead_letters_retried",
        projection=projection.name,
        stream_id=stream_id,
        applied=len(done),
        left=len(letters) - len(done),
    )
