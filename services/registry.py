"""The device registry: agents' heartbeats become presence rows and DeviceRegistered events."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import asyncpg
import msgspec
import nats.aio.client
import nats.aio.msg
import structlog

from events.device import DeviceRegistered
from services.agent_protocol import Heartbeat, device_of
from services.clock import wait_first
from services.db import DATABASE_ERRORS, describe
from services.store import DuplicateEvent, append

log = structlog.get_logger("deployx.registry")
_heartbeat = msgspec.json.Decoder(Heartbeat)
_IDS = uuid.UUID("5e0c7a52-61a4-4d0b-a0f4-6c2f3d8e9b17")
ALL_HEARTBEATS = "deployx.agents.*.heartbeat"
FLUSH_EVERY = 1.0
METADATA = {"user": "registry", "service": "registry"}


def registration_id(beat: Heartbeat) -> str:
    """One DeviceRegistered per agent start, whichever registry replica sees it first."""
    return str(uuid.uuid5(_IDS, f"{beat.device_id}/{beat.started_at.isoformat()}"))


class DeviceRegistry:
    def __init__(self, pool: asyncpg.Pool, client: nats.aio.client.Client) -> None:
        self._pool, self._nc = pool, client
        self._latest: dict[str, Heartbeat] = {}
        self._registered: set[str] = set()

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
        try:
            beat = _heartbeat.decode(msg.data)
        except msgspec.DecodeError:
            return
        if beat.device_id != device_of(msg.subject):
            log.warning("heartbeat_rejected", subject=msg.subject, claimed=beat.device_id)
            return
        self._latest[beat.device_id] = beat

    async def flush(self) -> None:
        """Writes the presence of every agent heard since the last flush, in one statement."""
        beats, self._latest = list(self._latest.values()), {}
        if not beats:
            return
        try:
            await self._write_presence(beats)
        except BaseException:
            # Kept for the next flush (unless a newer beat came meanwhile): an agent must not
            # look offline because the database was away for a few seconds.
            self._latest = {beat.device_id: beat for beat in beats} | self._latest
            raise
        for beat in beats:
            key = registration_id(beat)
            if key not in self._registered:
                await self._register(beat, key)

    async def _write_presence(self, beats: list[Heartbeat]) -> None:
        await self._pool.execute(
            """
            INSERT INTO device_presence (device_id, last_seen, interval_seconds)
            SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::real[])
            ON CONFLICT (device_id) DO UPDATE SET
                last_seen = greatest(device_presence.last_seen, EXCLUDED.last_seen),
                interval_seconds = EXCLUDED.interval_seconds
            """,
            [beat.device_id for beat in beats],
            [beat.sent_at for beat in beats],
            [beat.interval_seconds for beat in beats],
        )

    async def _register(self, beat: Heartbeat, key: str) -> None:
        event = DeviceRegistered(
            device_id=beat.device_id,
            hostname=beat.hostname,
            os=beat.os,
            agent_version=beat.agent_version,
            labels=dict(beat.labels),
            registered_at=beat.started_at,
        )
        with contextlib.suppress(DuplicateEvent):  # another registry replica wrote it
            await append(
                self._pool,
                f"device-{beat.device_id}",
                "devices",
                [event],
                expected_version=None,
                metadata=METADATA,
                event_ids=[key],
            )
        self._registered.add(key)
