"""Presence into the log: DeviceWentOffline when a device's heartbeats stop, and a new
DeviceRegistered when a device the log has as offline is heard again."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from datetime import datetime

import structlog

from events.device import DeviceRegistered, DeviceWentOffline
from services.agent.protocol import Heartbeat
from services.infra.db import Db
from services.infra.store import DuplicateEvent, append

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


def stream_of(device_id: str) -> str:
    return f"device-{device_id}"


async def record_silent_devices(db: Db, now: datetime, hearing_since: datetime) -> int:
    """Appends DeviceWentOffline for each device online in the log whose heartbeats stopped.

    Its id comes from the device and its last heartbeat: registry replicas write it once.
    """
    rows = await db.fetch(_SILENT, now, hearing_since, MISSED_HEARTBEATS)
    for row in rows:
        event = DeviceWentOffline(device_id=row["device_id"], last_seen=row["last_seen"])
        key = uuid.uuid5(_IDS, f"offline/{row['device_id']}/{row['last_seen'].isoformat()}")
        with contextlib.suppress(DuplicateEvent):
            await append(
                db,
                stream_of(event.device_id),
                "devices",
                [event],
                expected_version=None,
                metadata=METADATA,
                event_ids=[str(key)],
            )
        log.info("device_went_offline", device_id=event.device_id, last_seen=row["last_seen"])
    return len(rows)


async def record_returns(db: Db, beats: Sequence[Heartbeat]) -> int:
    """Appends DeviceRegistered for each heard device that the log has as offline."""
    if not beats:
        return 0
    rows = await db.fetch(
        "SELECT id, last_seen FROM devices WHERE NOT online AND id = ANY($1::text[])",
        [beat.device_id for beat in beats],
    )
    offline_since = {row["id"]: row["last_seen"] for row in rows}
    for beat in beats:
        since = offline_since.get(beat.device_id)
        if since is None:
            continue
        key = uuid.uuid5(_IDS, f"back/{beat.device_id}/{since.isoformat()}")
        with contextlib.suppress(DuplicateEvent):
            await append(
                db,
                stream_of(beat.device_id),
                "devices",
                [registration(beat)],
                expected_version=None,
                metadata=METADATA,
                event_ids=[str(key)],
            )
    return len(offline_since)


def registration(beat: Heartbeat) -> DeviceRegistered:
    return DeviceRegistered(
        device_id=beat.device_id,
        hostname=beat.hostname,
        os=beat.os,
        agent_version=beat.agent_version,
        labels=dict(beat.labels),
        registered_at=beat.started_at,
    )
