"""The device registry and device groups read tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

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
from projections.batching import Batched, apply_in_runs, rows_json

_json = msgspec.json.Encoder()


_HANDLED = (DeviceRegistered, DeviceWentOffline, GroupCreated, GroupUpdated, GroupDeleted)


class DevicesProjection:
    name = "devices"
    tables = ("devices", "device_groups")
    version = 1

    async def apply_batch(self, conn: Db, batch: Sequence[RecordedEvent]) -> None:
        await apply_in_runs(conn, batch, _HANDLED, _BATCHED, self.apply)

    async def apply(self, conn: Db, recorded: RecordedEvent) -> None:
        event = recorded.event
        match event:
            case DeviceRegistered():
                await conn.execute(
                    """
                    INSERT INTO devices (id, hostname, os, agent_version, labels, online,
                        registered_at, last_seen, capabilities)
                    VALUES ($1, $2, $3, $4, $5, true, $6, $6, $7)
                    ON CONFLICT (id) DO UPDATE SET hostname = EXCLUDED.hostname,
                        os = EXCLUDED.os, agent_version = EXCLUDED.agent_version,
                        labels = EXCLUDED.labels, online = true,
                        last_seen = greatest(devices.last_seen, EXCLUDED.last_seen),
                        capabilities = EXCLUDED.capabilities
                    """,
                    event.device_id,
                    event.hostname,
                    event.os,
                    event.agent_version,
                    _json.encode(event.labels).decode(),
                    event.registered_at,
                    _json.encode(event.capabilities).decode(),
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


_REGISTERED_MANY = """
INSERT INTO devices (id, hostname, os, agent_version, labels, online, registered_at, last_seen,
    capabilities)
SELECT device_id, hostname, os, agent_version, labels, true, registered_at, last_seen,
    capabilities
FROM json_to_recordset($1::json) AS x(device_id text, hostname text, os text,
    agent_version text, labels jsonb, registered_at timestamptz, last_seen timestamptz,
    capabilities jsonb)
ON CONFLICT (id) DO UPDATE SET hostname = EXCLUDED.hostname,
    os = EXCLUDED.os, agent_version = EXCLUDED.agent_version,
    labels = EXCLUDED.labels, online = true,
    last_seen = greatest(devices.last_seen, EXCLUDED.last_seen),
    capabilities = EXCLUDED.capabilities
"""


async def _registered_many(conn: Db, run: list[RecordedEvent]) -> None:
    # A device registering again in the run: its first registration's time, its latest
    # details, the latest time it was seen; as applying each in turn would leave it.
    latest: dict[str, DeviceRegistered] = {}
    first: dict[str, datetime] = {}
    seen: dict[str, datetime] = {}
    for recorded in run:
        event = recorded.event
        assert isinstance(event, DeviceRegistered)
        latest[event.device_id] = event
        first.setdefault(event.device_id, event.registered_at)
        seen[event.device_id] = max(seen.get(event.device_id, event.registered_at),
                                    event.registered_at)  # fmt: skip
    rows = [
        msgspec.structs.asdict(event) | {"registered_at": first[device], "last_seen": seen[device]}
        for device, event in latest.items()
    ]
    await conn.execute(_REGISTERED_MANY, rows_json(rows))


_BATCHED: dict[type, Batched] = {
    DeviceRegistered: Batched(
        keys=lambda event: (event.device_id,), write=_registered_many, folds=True
    ),
}
