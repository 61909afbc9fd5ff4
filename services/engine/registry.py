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

from services.agent.protocol import DECODE_ERRORS, Heartbeat, device_of
from services.engine.presence_log import (
    METADATA,
    record_returns,
    record_silent_devices,
    registration,
    stream_of,
)
from services.infra.clock import wait_first
from services.infra.db import DATABASE_ERRORS, UNAVAILABLE, describe
from services.infra.rejections import Rejections
from services.infra.store import DuplicateEvent, append

log = structlog.get_logger("deployx.registry")
_heartbeat = msgspec.json.Decoder(Heartbeat)
_IDS = uuid.UUID("5e0c7a52-61a4-4d0b-a0f4-6c2f3d8e9b17")
ALL_HEARTBEATS = "deployx.agents.*.heartbeat"
FLUSH_EVERY = 1.0
# Devices whose heartbeats stopped are looked for this often (one query).
SWEEP_EVERY = 5.0
# This registry was hearing (NATS connected) up to now; rows of registries gone a day are dropped.
_HEARD = """
WITH gone AS (DELETE FROM registry_heard WHERE at < $2::timestamptz - interval '1 day')
INSERT INTO registry_heard (registry, at) VALUES ($1, $2)
ON CONFLICT (registry) DO UPDATE SET at = EXCLUDED.at
"""
# A device's clock may be off; a start time further ahead than this is taken as "now".
CLOCK_SKEW = timedelta(minutes=5)


class Heard(msgspec.Struct, frozen=True):
    """A heartbeat, and when this registry received it: presence is kept by our clock, since
    a device's own (sent_at) may be wrong, or a lie that keeps it "online" for ever."""

    beat: Heartbeat
    received_at: datetime


def registration_id(beat: Heartbeat) -> str:
    """One DeviceRegistered per agent start, whichever registry replica sees it first."""
    return str(uuid.uuid5(_IDS, f"{beat.device_id}/{beat.started_at.isoformat()}"))


class DeviceRegistry:
    def __init__(self, pool: asyncpg.Pool, client: nats.aio.client.Client) -> None:
        self._pool, self._nc = pool, client
        self._latest: dict[str, Heard] = {}
        self._registered: set[str] = set()
        self._swept_at = 0.0
        self._name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Since when this registry has heard without a break (NATS up, presence written).
        self._hearing_since: datetime | None = None
        self.rejections = Rejections()

    async def run(self, stop: asyncio.Event) -> None:
        subscription = await self._nc.subscribe(ALL_HEARTBEATS, cb=self._on_heartbeat)
        try:
            while not stop.is_set():
                await wait_first(stop, timeout=FLUSH_EVERY)
                try:
                    await self.flush()
                except DATABASE_ERRORS as exc:
                    log.warning("registry_flush_failed", error=describe(exc))
        finally:
            await subscription.unsubscribe()

    async def _on_heartbeat(self, msg: nats.aio.msg.Msg) -> None:
        sender = device_of(msg.subject)
        now = datetime.now(UTC)
        try:
            beat = _heartbeat.decode(msg.data)
        except DECODE_ERRORS as exc:
            self.rejections.note(sender, "heartbeat", str(exc) or type(exc).__name__, msg.data)
            return
        if beat.device_id != sender:
            self.rejections.note(sender, "heartbeat", "a heartbeat for another device", msg.data)
            return
        if beat.started_at > now + CLOCK_SKEW:
            self.rejections.note(
                sender, "heartbeat", "started_at is in the future: taken as now", msg.data
            )
            beat = msgspec.structs.replace(beat, started_at=now)
        self._latest[beat.device_id] = Heard(beat, now)

    async def flush(self) -> None:
        """Writes the presence of every agent heard since the last flush (one statement), and
        tells the log of agents that started, came back, or fell silent."""
        heard, self._latest = list(self._latest.values()), {}
        if not self._nc.is_connected:
            self._hearing_since = None
        try:
            await self.rejections.flush(self._pool, datetime.now(UTC))
            if heard:
                await self._write_presence(heard)
        except UNAVAILABLE:
            self._hearing_since = None
            # Kept for the next flush (unless a newer beat came meanwhile): an agent must not
            # look offline because the database was away for a few seconds.
            self._latest = {h.beat.device_id: h for h in heard} | self._latest
            raise
        known: list[Heartbeat] = []  # agents whose start is recorded already
        for beat in (h.beat for h in heard):
            key = registration_id(beat)
            if key in self._registered:
                known.append(beat)
            else:
                await self._register(beat, key)
        await record_returns(self._pool, known)
        now = datetime.now(UTC)
        if self._nc.is_connected:
            await self._pool.execute(_HEARD, self._name, now)
        if self._hearing_since is None:
            self._hearing_since = now if self._nc.is_connected else None
        elif (now.timestamp() - self._swept_at) >= SWEEP_EVERY:
            self._swept_at = now.timestamp()
            await record_silent_devices(self._pool, now, self._hearing_since)

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

    async def _register(self, beat: Heartbeat, key: str) -> None:
        with contextlib.suppress(DuplicateEvent):  # another registry replica wrote it
            await append(
                self._pool,
                stream_of(beat.device_id),
                "devices",
                [registration(beat)],
                expected_version=None,
                metadata=METADATA,
                event_ids=[key],
            )
        self._registered.add(key)
