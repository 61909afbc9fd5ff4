"""The device registry and device groups read tables."""

from __future__ import annotations

import msgspec

from events.codec import RecordedEvent
from events.device import (
    DeviceRegistered,
    DeviceWentOffline,
    GroupCreated,
    GroupDeleted,
    GroupUpdated,
)
from projections.base import Db

_json = msgspec.json.Encoder()


class DevicesProjection:
    name = "devices"
    tables = ("devices", "device_groups")

    async def apply(self, conn: Db, recorded: RecordedEvent) -> None:
        event = recorded.event
        match event:
            case DeviceRegistered():
                await conn.execute(
                    """
                    INSERT INTO devices (id, hostname, os, agent_version, labels, online,
                        registered_at, last_seen)
                    VALUES ($1, $2, $3, $4, $5, true, $6, $6)
                    ON CONFLICT (id) DO UPDATE SET hostname = EXCLUDED.hostname,
                        os = EXCLUDED.os, agent_version = EXCLUDED.agent_version,
                        labels = EXCLUDED.labels, online = true,
                        last_seen = greatest(devices.last_seen, EXCLUDED.last_seen)
                    """,
                    event.device_id,
                    event.hostname,
                    event.os,
                    event.agent_version,
                    _json.encode(event.labels).decode(),
                    event.registered_at,
                )
            case DeviceWentOffline():
                await conn.execute(
                    "UPDATE devices SET online = false, last_seen = greatest(last_seen, $2) "
                    "WHERE id = $1",
                    event.device_id,
                    event.last_seen,
                )
            case GroupCreated():
                await conn.execute(
                    """
                    INSERT INTO device_groups (id, name, device_ids, user_id, created_at,
                        updated_at)
                    VALUES ($1, $2, $3, $4, $5, $5)
                    ON CONFLICT (id) DO NOTHING
                    """,
                    event.group_id,
                    event.name,
                    event.device_ids,
                    event.user_id,
                    event.created_at,
                )
            case GroupUpdated():
                await conn.execute(
                    "UPDATE device_groups SET name = $2, device_ids = $3, updated_at = $4 "
                    "WHERE id = $1",
                    event.group_id,
                    event.name,
                    event.device_ids,
                    event.updated_at,
                )
            case GroupDeleted():
                await conn.execute("DELETE FROM device_groups WHERE id = $1", event.group_id)
