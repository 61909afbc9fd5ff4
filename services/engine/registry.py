"""The device registry: agents' heartbeats become presence rows, and the log learns of each
agent's start, of devices that fall silent and of those that come back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import nats.aio.client
import nats.aio.msg
import structlog

from services.agent.protocol import DECODE_ERRORS, BareHeartbeat, Heartbeat, device_of
from services.engine.presence_log import (
    record_registrations,
    record_returns,
    record_silent_devices,
)
from services.infra.clock import wait_first
from services.infra.db import DATABASE_ERRORS, UNAVAILABLE, describe
from services.infra.rejections import Rejections

log = structlog.get_logger("deployx.registry")
_heartbeat = msgspec.json.Decoder(Heartbeat)
_bare_heartbeat = msgspec.json.Decoder(BareHeartbeat)
_IDS = uuid.UUID("5e0c7a52-61a4-4d0b-a0f4-6c2f3d8e9b17")
ALL_HEARTBEATS = "deployx.agents.*.heartbeat"
FLUSH_EVERY = 1.0
# Devices whose heartbeats stopped are looked for this often (one query): at every flush, so
# that a dead agent is offline (in the log, so in the console) within a second of its third
# missed heartbeat, not up to five seconds later.
SWEEP_EVERY = FLUSH_EVERY
# This registry was hearing (NATS connected) up to now; rows of registries gone a day are dropped.
_HEARD = """
WITH gone AS (DELETE FROM registry_heard WHERE at < $2::timestamptz - interval '1 day')
INSERT INTO registry_heard (registry, at) VALUES ($1, $2)
ON CONFLICT (registry) DO UPDATE SET at = EXCLUDED.at
"""
# A device's clock may be off; a start time further ahead than this is taken as "now".
CLOCK_SKEW = timedelta(minutes=5)
# Presence is written this many devices a statement, each part handed to the log loop as soon
# as it is written: a fleet starting together is registered while its presence is written.
PRESENCE_CHUNK = 5000
# Statements appending DeviceRegistered at once (on as many connections): PostgreSQL inserts
# one part while this process prepares the next.
APPENDS_IN_FLIGHT = 2


class Heard(msgspec.Struct, frozen=True, gc=False):
    """A heartbeat, and when this registry received it: presence is kept by our clock, since
    a device's own (sent_at) may be wrong, or a lie that keeps it "online" for ever."""

    beat: Heartbeat
    received_at: datetime


def registration_id(beat: Heartbeat) -> str:
    """One DeviceRegistered per agent start, whichever registry replica sees it first: the
    uuid5 of "<device>/<started_at>"."""
    return str(uuid.uuid5(_IDS, f"{beat.device_id}/{beat.started_at.isoformat()}"))


class DeviceRegistry:
    """Two loops that never wait for each other: one writes presence (every FLUSH_EVERY, one
    statement for every agent heard), the other tells the log of starts, returns and silences
    (one statement per kind of event and round), so a slow append never delays presence."""

    def __init__(self, pool: asyncpg.Pool, client: nats.aio.client.Client) -> None:
        self._pool, self._nc = pool, client
        self._latest: dict[str, Heard] = {}  # heard since presence was last written
        self._to_log: dict[str, Heartbeat] = {}  # presence written, not yet looked at for the log
        self._log_wake = asyncio.Event()
        # device -> the agent start whose DeviceRegistered this registry saw in the log
        self._registered: dict[str, datetime] = {}
        self._swept_at = 0.0
        # Every heartbeat received before this instant is in device_presence.
        self._written_until: datetime | None = None
        self._name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Since when this registry has heard without a break (NATS up, presence written).
        self._hearing_since: datetime | None = None
        self.rejections = Rejections()

    async def run(self, stop: asyncio.Event) -> None:
        subscription = await self._nc.subscribe(ALL_HEARTBEATS, cb=self._on_heartbeat)
        logging = asyncio.create_task(self._log_loop(stop))
        try:
            while not stop.is_set():
                await wait_first(stop, timeout=FLUSH_EVERY)
                try:
                    await self.flush()
                except DATABASE_ERRORS as exc:
                    log.warning("registry_flush_failed", error=describe(exc))
        finally:
            logging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await logging
            await subscription.unsubscribe()

    async def _log_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await wait_first(self._log_wake, stop, timeout=FLUSH_EVERY)
            self._log_wake.clear()
            try:
                await self.record()
            except DATABASE_ERRORS as exc:
                log.warning("registry_log_failed", error=describe(exc))
                await wait_first(stop, timeout=FLUSH_EVERY)

    async def _on_heartbeat(self, msg: nats.aio.msg.Msg) -> None:
        sender = device_of(msg.subject)
        now = datetime.now(UTC)
        refused: str | None = None  # one message is noted once, with its first fault
        try:
            beat = _heartbeat.decode(msg.data)
        except DECODE_ERRORS as exc:
            refused = str(exc) or type(exc).__name__
            # Malformed capabilities alone are refused; the device is still present.
            try:
                beat = Heartbeat(**msgspec.structs.asdict(_bare_heartbeat.decode(msg.data)))
            except DECODE_ERRORS:
                self.rejections.note(sender, "heartbeat", refused, msg.data)
                return
        if beat.device_id != sender:
            refused = "a heartbeat for another device"
            self.rejections.note(sender, "heartbeat", refused, msg.data)
            return
        if beat.started_at > now + CLOCK_SKEW:
            refused = refused or "started_at is in the future: taken as now"
            beat = msgspec.structs.replace(beat, started_at=now)
        if refused is not None:
            self.rejections.note(sender, "heartbeat", refused, msg.data)
        self._latest[beat.device_id] = Heard(beat, now)

    async def flush(self) -> None:
        """Writes the presence of every agent heard since the last flush (one statement per
        PRESENCE_CHUNK), and hands each part to the log loop once it is written."""
        until = datetime.now(UTC)
        heard, self._latest = list(self._latest.values()), {}
        if not self._nc.is_connected:
            self._hearing_since = None
        written = 0
        try:
            await self.rejections.flush(self._pool, until)
            for written in range(0, len(heard), PRESENCE_CHUNK):
                part = heard[written : written + PRESENCE_CHUNK]
                await self._write_presence(part)
                self._to_log.update((h.beat.device_id, h.beat) for h in part)
                self._log_wake.set()
            written = len(heard)
        except UNAVAILABLE:
            self._hearing_since = None
            # Kept for the next flush (unless a newer beat came meanwhile): an agent must not
            # look offline because the database was away for a few seconds.
            self._latest = {h.beat.device_id: h for h in heard[written:]} | self._latest
            raise
        self._written_until = until
        now = datetime.now(UTC)
        if self._nc.is_connected:
            await self._pool.execute(_HEARD, self._name, now)
        if self._hearing_since is None and self._nc.is_connected:
            self._hearing_since = now

    async def record(self) -> None:
        """Tells the log of the agents that started or came back among those whose presence
        was written, and (every SWEEP_EVERY) of those that fell silent: one statement each."""
        beats, self._to_log = self._to_log, {}
        try:
            await self._record(beats)
        except DATABASE_ERRORS:
            self._to_log = beats | self._to_log  # looked at again next round
            raise
        hearing_since, until = self._hearing_since, self._written_until
        if hearing_since is None or until is None or until <= hearing_since:
            return  # just started hearing (again): give presence a round first
        if (until.timestamp() - self._swept_at) >= SWEEP_EVERY:
            # Silent as of the last presence write, not of now: a slow presence write must
            # not make its devices look silent.
            await record_silent_devices(self._pool, until, hearing_since)
            self._swept_at = until.timestamp()

    async def _record(self, beats: dict[str, Heartbeat]) -> None:
        registered = self._registered
        starts = [
            (beat, registration_id(beat))
            for beat in beats.values()
            if registered.get(beat.device_id) != beat.started_at
        ]
        known = [
            beat for beat in beats.values() if registered.get(beat.device_id) == beat.started_at
        ]
        if starts:
            # A device this registry never saw registered is most likely new: its stream empty.
            unseen = [start for start in starts if start[0].device_id not in registered]
            again = [start for start in starts if start[0].device_id in registered]
            in_log = await record_registrations(self._pool, unseen, APPENDS_IN_FLIGHT, new=True)
            in_log |= await record_registrations(self._pool, again, APPENDS_IN_FLIGHT)
            for beat, key in starts:
                if key in in_log:
                    registered[beat.device_id] = beat.started_at
                else:  # still racing another writer: next round
                    self._to_log.setdefault(beat.device_id, beat)
        await record_returns(self._pool, known)

    async def _write_presence(self, heard: list[Heard]) -> None:
        await self._pool.execute(
            """
            INSERT INTO device_presence (device_id, last_seen, interval_seconds)
            SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::real[])
            ON CONFLICT (device_id) DO UPDATE SET
                last_seen = greatest(device_presence.last_seen, EXCLUDED.last_seen),
                interval_seconds = EXCLUDED.interval_seconds
            """,
            [h.beat.device_id for h in heard],
            [h.received_at for h in heard],
            [h.beat.interval_seconds for h in heard],
        )
