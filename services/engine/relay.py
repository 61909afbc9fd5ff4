"""The relay: every event of the log, in log order, to the JetStream stream DEPLOYX_EVENTS."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from datetime import timedelta

import asyncpg
import nats.aio.client
import nats.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, BadRequestError

from events.codec import RecordedEvent, Undecodable, encode_envelope
from services.engine.batch_publish import BatchPublisher, Outgoing
from services.infra import dead_letters
from services.infra.clock import Backoff, wait_first
from services.infra.db import UNAVAILABLE
from services.infra.listen import Listener
from services.infra.store import (
    EVENTS_CHANNEL,
    LogCursor,
    has_events_after,
    load_checkpoint,
    read_after,
    read_positions,
    save_checkpoint,
)

log = structlog.get_logger("deployx.relay")

STREAM = "DEPLOYX_EVENTS"
CHECKPOINT = "relay"
# Any relay that crashes between publishing and saving its checkpoint republishes at most one
# batch, seconds later: a window this long drops every such duplicate (Nats-Msg-Id = event id).
DUPLICATE_WINDOW = timedelta(minutes=10)
# The log in PostgreSQL is the record; the stream is transport, kept long enough for any
# consumer to come back from a long outage.
MAX_AGE = timedelta(days=7)
BATCH = 1000
# A batch's acks arrive within milliseconds of each other. None for this long: the messages
# went to a stream leader that died (they are never answered), so publish the batch again.
ACK_STALL = 5.0
# The admins' retries of set-aside events are looked for at most this often (seconds): while
# appends keep coming, a query per batch for what is rare would be one round trip in four; an
# idle relay's next round (at most `idle` away) looks at once.
DEAD_LETTERS_EVERY = 1.0
# Only one relay publishes at a time: the others wait on this session-level advisory lock,
# which PostgreSQL releases the moment the holder's connection dies.
_LEADER_LOCK = 7_240_002
# nats-server's JSStreamMessageExceedsMaximumErr: the stream refuses this message for its size.
_MESSAGE_TOO_LARGE = 10054


class Unpublishable(Exception):
    """An event that no retry will get onto the stream: it is set aside, the relay goes on."""


def unpublishable_reason(recorded: RecordedEvent, exc: BaseException | None = None) -> str | None:
    """Why this event can never be published (an error about the event itself), or None."""
    if isinstance(recorded.event, Undecodable):
        return f"cannot be read by this version: {recorded.event.error}"
    if isinstance(exc, nats.errors.MaxPayloadError):
        return f"larger than the NATS server's max_payload: {exc}"
    if isinstance(exc, APIError) and exc.err_code == _MESSAGE_TOO_LARGE:
        return f"larger than the stream takes: {exc}"
    return None


def stream_config(replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=STREAM,
        description="Every DeployX event, in log order; the PostgreSQL log is the record",
        subjects=["deployx.events.>"],
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=DUPLICATE_WINDOW.total_seconds(),
        max_age=MAX_AGE.total_seconds(),
        discard=DiscardPolicy.OLD,
    )


async def ensure_stream(js: JetStreamContext, replicas: int = 1) -> None:
    config = stream_config(replicas)
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)  # exists with other settings: bring it to ours


def subject_of(recorded: RecordedEvent) -> str:
    return f"deployx.events.{recorded.category}.{recorded.type}"


def outgoing(batch: list[RecordedEvent]) -> list[Outgoing]:
    """The batch's messages; Unpublishable (nothing is published) if one can never be."""
    for recorded in batch:
        if unpublishable_reason(recorded) is not None:
            raise Unpublishable(recorded.id)
    return [Outgoing(subject_of(r), encode_envelope(r), r.id) for r in batch]


async def run_relay(
    pool: asyncpg.Pool,
    client: nats.aio.client.Client,
    stop: asyncio.Event,
    *,
    lease_seconds: float | None = None,
) -> None:
    """Leads (or waits to) until stop; raises when the database goes away, to be run again.

    lease_seconds: leadership is a lease of that length, renewed by every statement; a leader
    silent longer (hung, or cut off from PostgreSQL) loses its session and its lock.
    """
    wake = asyncio.Event()
    # A lost connection wakes the loop too, whose next read then fails: the leader lock was
    # on a connection of the same server, so leading must start over.
    listener = Listener(pool, EVENTS_CHANNEL, on_notify=lambda _: wake.set(), on_gap=wake.set)
    async with pool.acquire() as conn:
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LEADER_LOCK):
            log.info("relay_standby")
            await wait_first(stop, timeout=1.0)
            if stop.is_set():
                return
        # The checkpoint's commits do not wait for their flush to disk (2 to 10 ms each here):
        # one that a PostgreSQL crash loses only means republishing events the stream has
        # already, and it drops those by id (the duplicate window).
        await conn.execute("SELECT set_config('synchronous_commit', 'off', false)")
        idle = 5.0
        if lease_seconds is not None:
            await _hold_lease(conn, lease_seconds)
            idle = min(idle, lease_seconds / 3)  # a statement at least this often: renewed
        await listener.start()
        log.info("relay_leading")
        try:
            async with BatchPublisher(client, ACK_STALL) as publisher:
                await _relay_loop(conn, client.jetstream(), publisher, stop, wake, idle)
        finally:
            await listener.stop()
            with contextlib.suppress(*UNAVAILABLE):  # a lost connection took the lock along
                await conn.execute("SELECT pg_advisory_unlock($1)", _LEADER_LOCK)


async def _hold_lease(conn: asyncpg.pool.PoolConnectionProxy, seconds: float) -> None:
    """The server ends the leader's session, and so releases its lock, after `seconds` without
    a statement (idle_session_timeout, PostgreSQL 14+), or once TCP keepalives find the peer
    gone (every version), instead of the kernel's two hours. Undone (RESET ALL) when the
    connection goes back to the pool."""
    milliseconds = str(max(1000, round(seconds * 1000)))
    probe = str(max(1, round(seconds / 3)))
    settings = {
        "tcp_keepalives_idle": probe,
        "tcp_keepalives_interval": probe,
        "tcp_keepalives_count": "2",
        "tcp_user_timeout": milliseconds,
    }
    if conn.get_server_version() >= (14, 0):
        settings["idle_session_timeout"] = milliseconds
    for name, value in settings.items():
        await conn.execute("SELECT set_config($1, $2, false)", name, value)


async def _relay_loop(
    conn: asyncpg.pool.PoolConnectionProxy,
    js: JetStreamContext,
    publisher: BatchPublisher,
    stop: asyncio.Event,
    wake: asyncio.Event,
    idle: float,
) -> None:
    cursor = await load_checkpoint(conn, CHECKPOINT)
    held_back = Backoff(first=0.002, limit=0.1)
    # After a full batch, the next one is read while that one is published and acked.
    ahead: list[RecordedEvent] = []
    letters_checked = -math.inf
    while not stop.is_set():
        wake.clear()
        if time.monotonic() - letters_checked > DEAD_LETTERS_EVERY:
            await _retry_dead_letters(conn, js)
            letters_checked = time.monotonic()
        # A batch read ahead is as good as one read now (the log only grows past it); an
        # empty one was read before the last batch was acked: there may be more by now.
        batch = ahead or await read_after(conn, cursor, BATCH)
        if batch:
            cursor, ahead = await _relay_batch(conn, js, publisher, batch)
            held_back.reset()
            # After a short batch, no second read just to find nothing: an append committed
            # since sent a wake-up, and one held back is what has_events_after finds.
            if ahead or len(batch) == BATCH or wake.is_set():
                continue
            if await has_events_after(conn, cursor):
                continue
            await wait_first(wake, stop, timeout=idle)
            continue
        # Committed but held back behind an older open transaction: look again soon.
        if await has_events_after(conn, cursor):
            await asyncio.sleep(held_back.next())
            continue
        held_back.reset()
        await wait_first(wake, stop, timeout=idle)


async def _relay_batch(
    conn: asyncpg.pool.PoolConnectionProxy,
    js: JetStreamContext,
    publisher: BatchPublisher,
    batch: list[RecordedEvent],
) -> tuple[LogCursor, list[RecordedEvent]]:
    """Publishes the batch and saves the checkpoint after it; returns that checkpoint and,
    after a full batch, the next one, read on the connection while this one was published."""
    cursor = LogCursor.of(batch[-1])
    reading = asyncio.create_task(read_after(conn, cursor, BATCH)) if len(batch) == BATCH else None
    one_by_one = False
    try:
        try:
            await publisher.publish(outgoing(batch))
        except Exception as exc:
            if not isinstance(exc, Unpublishable) and not _about_one_event(exc):
                raise
            one_by_one = True
    except BaseException:
        # The connection runs one statement at a time: the read ahead ends before the next.
        # Its own error (the same outage, most likely) must not hide the publish's.
        if reading is not None:
            await asyncio.gather(reading, return_exceptions=True)
        raise
    ahead = await reading if reading is not None else []
    if one_by_one:
        await _publish_one_by_one(conn, js, batch)
    await save_checkpoint(conn, CHECKPOINT, cursor)
    return cursor, ahead


def _about_one_event(exc: BaseException) -> bool:
    return isinstance(exc, nats.errors.MaxPayloadError) or (
        isinstance(exc, APIError) and exc.err_code == _MESSAGE_TOO_LARGE
    )


async def _publish_one(js: JetStreamContext, recorded: RecordedEvent) -> str | None:
    """Publishes one event and waits for its ack; the reason it cannot ever be, or None."""
    reason = unpublishable_reason(recorded)
    if reason is not None:
        return reason
    try:
        await js.publish(
            subject_of(recorded), encode_envelope(recorded), headers={"Nats-Msg-Id": recorded.id}
        )
    except Exception as exc:
        reason = unpublishable_reason(recorded, exc)
        if reason is None:
            raise
        return reason
    return None


async def _publish_one_by_one(
    conn: asyncpg.pool.PoolConnectionProxy, js: JetStreamContext, batch: list[RecordedEvent]
) -> None:
    """A batch with an event the stream refuses: the others go out, that one is set aside."""
    for recorded in batch:
        reason = await _publish_one(js, recorded)
        if reason is not None:
            log.error("event_set_aside", position=recorded.position, error=reason)
            await dead_letters.set_aside(conn, CHECKPOINT, recorded, reason)


async def _retry_dead_letters(conn: asyncpg.pool.PoolConnectionProxy, js: JetStreamContext) -> None:
    """Publishes again each event an admin asked to retry (e.g. after raising max_payload)."""
    letters = await dead_letters.retry_requested(conn, [CHECKPOINT])
    if not letters:
        return
    events = await read_positions(conn, [letter.position for letter in letters])
    for letter, recorded in zip(letters, events, strict=True):
        reason = await _publish_one(js, recorded)
        if reason is None:
            await dead_letters.resolve(conn, [letter.id])
        else:
            await dead_letters.failed_again(conn, letter.id, reason)
