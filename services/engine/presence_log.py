"""Presence into the log: DeviceWentOffline when a device's heartbeats stop, and a new
DeviceRegistered when a device the log has as offline is heard again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime

import msgspec
import structlog

from events.device import DeviceRegistered, DeviceWentOffline
from services.agent.protocol import Heartbeat
from services.infra.db import Db
from services.infra.store import StreamEvent, append_each

log = structlog.get_logger("deployx.registry")
_IDS = uuid.UUID("0b1e7c55-2f0e-4a8e-9d61-93c4a0c2f7de")
METADATA = {"user": "registry", "service": "registry"}
# Silent for three intervals, while this registry has been hearing (NATS connected, presence
# written) for at least as long: a registry that was cut off, or just started, must not take
# its own deafness for the devices' silence.
_SILENT = """
SELECT p.device_id, p.last_seen FROM device_presence p JOIN devices d ON d.id = p.device_id
WHERE d.online
  AND p.last_seen < $1::timestamptz - make_interval(secs => p.interval_seconds * $3)
  AND $2::timestamptz < $1::timestamptz - make_interval(secs => p.interval_seconds * $3)
"""
MISSED_HEARTBEATS = 3
# Events per statement (and so per transaction): a long one would hold back every log reader.
CHUNK = 5000


def stream_of(device_id: str) -> str:
    return f"device-{device_id}"


def _entry(event: DeviceRegistered | DeviceWentOffline, key: str) -> StreamEvent:
    return StreamEvent(stream_of(event.device_id), "devices", event, key)


async def record_registrations(
    db: Db, beats: Sequence[tuple[Heartbeat, str]], in_flight: int = 1, *, new: bool = False
) -> set[str]:
    """Appends DeviceRegistered for each (agent start, its id), CHUNK a statement, up to
    in_flight statements at once (db must then be a pool); returns the ids now in the log
    (another replica may have written some). new: the devices are most likely new, their
    streams empty (append_each's new_streams)."""
    entries = [_entry(registration(beat), key) for beat, key in beats]
    return await _append(db, entries, in_flight, new_streams=new)


async def record_silent_devices(db: Db, now: datetime, hearing_since: datetime) -> int:
    """Appends DeviceWentOffline for each device online in the log whose heartbeats stopped,
    all in one statement.

    Its id comes from the device and its last heartbeat: registry replicas write it once.
    """
    rows = await db.fetch(_SILENT, now, hearing_since, MISSED_HEARTBEATS)
    entries = [
        _entry(
            DeviceWentOffline(device_id=row["device_id"], last_seen=row["last_seen"]),
            str(uuid.uuid5(_IDS, f"offline/{row['device_id']}/{row['last_seen'].isoformat()}")),
        )
        for row in rows
    ]
    await _append(db, entries)
    if rows:
        log.info("devices_went_offline", devices=len(rows), first=rows[0]["device_id"])
    return len(rows)


async def record_returns(db: Db, beats: Sequence[Heartbeat]) -> int:
    """Appends DeviceRegistered for each heard device that the log has as offline (one query
    and one statement)."""
    if not beats:
        return 0
    rows = await db.fetch(
        "SELECT id, last_seen FROM devices WHERE NOT online AND id = ANY($1::text[])",
        [beat.device_id for beat in beats],
    )
    offline_since = {row["id"]: row["last_seen"] for row in rows}
    entries = [
        _entry(
            registration(beat),
            str(uuid.uuid5(_IDS, f"back/{beat.device_id}/{since.isoformat()}")),
        )
        for beat in beats
        if (since := offline_since.get(beat.device_id)) is not None
    ]
    await _append(db, entries)
    return len(offline_since)


async def _append(
    db: Db, entries: list[StreamEvent], in_flight: int = 1, *, new_streams: bool = False
) -> set[str]:
    """Each entry once, in as many rounds as a stream has entries (usually one), each round
    CHUNK entries a statement, up to in_flight statements at once."""
    in_log: set[str] = set()
    slots = asyncio.Semaphore(in_flight)

    async def append(chunk: list[StreamEvent]) -> set[str]:
        async with slots:
            return await append_each(db, chunk, METADATA, new_streams=new_streams)

    while entries:
        batch: dict[str, StreamEvent] = {}
        rest: list[StreamEvent] = []
        for entry in entries:
            if entry.stream_id in batch:
                rest.append(entry)
            else:
                batch[entry.stream_id] = entry
        round_ = list(batch.values())
        chunks = [round_[start : start + CHUNK] for start in range(0, len(round_), CHUNK)]
        # Every statement runs to its end before a failure is raised: none is left writing.
        results = await asyncio.gather(*map(append, chunks), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
            in_log |= result
        entries = rest
    return in_log


def registration(beat: Heartbeat) -> DeviceRegistered:
    return DeviceRegistered(
        device_id=beat.device_id,
        hostname=beat.hostname,
        os=beat.os,
        agent_version=beat.agent_version,
        labels=dict(beat.labels),
        registered_at=beat.started_at,
        capabilities={} if beat.capabilities is None else msgspec.to_builtins(beat.capabilities),
    )
