"""Reading the device registry and the device groups."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from projections.base import Db

_labels = msgspec.json.Decoder(dict[str, Any])


class Device(msgspec.Struct, kw_only=True):
    id: str
    hostname: str
    os: str
    agent_version: str
    labels: dict[str, Any]
    online: bool
    registered_at: datetime
    last_seen: datetime
    # Seconds between the agent's heartbeats; offline after three missed (null: never heard).
    heartbeat_seconds: float | None
    # shells, package_managers, os, arch (services/agent/protocol.py); {} from older agents.
    capabilities: dict[str, Any]


class DeviceGroup(msgspec.Struct, kw_only=True):
    id: int
    name: str
    device_ids: list[str]
    created_at: datetime
    updated_at: datetime


class DevicePage(msgspec.Struct):
    items: list[Device]
    total: int


class GroupPage(msgspec.Struct):
    items: list[DeviceGroup]
    total: int


async def list_devices(db: Db) -> DevicePage:
    # Online comes from the agents' heartbeats (device_presence), not from the log.
    rows = await db.fetch(
        """
        SELECT d.id, d.hostname, d.os, d.agent_version, d.labels::text, d.registered_at,
            greatest(d.last_seen, p.last_seen) AS last_seen,
            p.interval_seconds AS heartbeat_seconds, d.capabilities::text,
            coalesce(p.last_seen > now() - make_interval(secs => p.interval_seconds * 3), false)
                AS online
        FROM devices d LEFT JOIN device_presence p ON p.device_id = d.id
        ORDER BY d.id
        """
    )
    items = [
        Device(
            **(
                dict(row)
                | {
                    "labels": _labels.decode(row["labels"]),
                    "capabilities": _labels.decode(row["capabilities"]),
                }
            )
        )
        for row in rows
    ]
    return DevicePage(items=items, total=len(items))


async def list_groups(db: Db) -> GroupPage:
    rows = await db.fetch(
        "SELECT id, name, device_ids, created_at, updated_at FROM device_groups ORDER BY id"
    )
    items = [DeviceGroup(**dict(row)) for row in rows]
    return GroupPage(items=items, total=len(items))


async def missing_groups(db: Db, group_ids: list[int]) -> list[int]:
    """The ids among group_ids that name no group."""
    if not group_ids:
        return []
    found = await db.fetch("SELECT id FROM device_groups WHERE id = ANY ($1::int[])", group_ids)
    known = {row["id"] for row in found}
    return [group_id for group_id in group_ids if group_id not in known]


async def get_group(db: Db, group_id: int) -> DeviceGroup | None:
    row = await db.fetchrow(
        "SELECT id, name, device_ids, created_at, updated_at FROM device_groups WHERE id = $1",
        group_id,
    )
    return DeviceGroup(**dict(row)) if row else None


async def group_named(db: Db, name: str) -> int | None:
    """The id of the group called name (ignoring case and outer spaces), if any."""
    found = await db.fetchval(
        "SELECT id FROM device_groups WHERE lower(btrim(name)) = lower(btrim($1)) "
        "ORDER BY id LIMIT 1",
        name,
    )
    return None if found is None else int(found)


async def tasks_using_group(db: Db, group_id: int) -> list[str]:
    """The ids of every task that targets group_id, oldest first."""
    rows = await db.fetch(
        "SELECT id::text FROM tasks WHERE $1 = ANY (group_ids) ORDER BY created_at, id", group_id
    )
    return [row["id"] for row in rows]
