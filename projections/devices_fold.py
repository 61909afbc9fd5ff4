"""The devices projection (projections/devices.py) folded in memory: devices and groups."""

from __future__ import annotations

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
from projections.batching import json_text
from projections.fold import Rows, type_names

_HANDLED = (DeviceRegistered, DeviceWentOffline, GroupCreated, GroupUpdated, GroupDeleted)


class DeviceRow(msgspec.Struct, kw_only=True):
    id: str
    hostname: str
    os: str
    agent_version: str
    labels: str
    online: bool
    registered_at: datetime
    last_seen: datetime
    capabilities: str


class GroupRow(msgspec.Struct, kw_only=True):
    id: int
    name: str
    device_ids: list[str]
    user_id: str
    created_at: datetime
    updated_at: datetime


class DevicesFold:
    handled = type_names(_HANDLED)

    def __init__(self) -> None:
        self.devices: dict[str, DeviceRow] = {}
        self.groups: dict[int, GroupRow] = {}

    def evolve(self, recorded: RecordedEvent) -> None:
        event = recorded.event
        match event:
            case DeviceRegistered():
                device = self.devices.get(event.device_id)
                if device is None:
                    self.devices[event.device_id] = DeviceRow(
                        id=event.device_id,
                        hostname=event.hostname,
                        os=event.os,
                        agent_version=event.agent_version,
                        labels=json_text(event.labels),
                        online=True,
                        registered_at=event.registered_at,
                        last_seen=event.registered_at,
                        capabilities=json_text(event.capabilities),
                    )
                else:  # registered again: its first registration's time stays
                    device.hostname = event.hostname
                    device.os = event.os
                    device.agent_version = event.agent_version
                    device.labels = json_text(event.labels)
                    device.online = True
                    device.last_seen = max(device.last_seen, event.registered_at)
                    device.capabilities = json_text(event.capabilities)
            case DeviceWentOffline():
                if device := self.devices.get(event.device_id):
                    device.online = False
                    device.last_seen = max(device.last_seen, event.last_seen)
            case GroupCreated():
                if event.group_id not in self.groups:
                    self.groups[event.group_id] = GroupRow(
                        id=event.group_id,
                        name=event.name,
                        device_ids=event.device_ids,
                        user_id=event.user_id,
                        created_at=event.created_at,
                        updated_at=event.created_at,
                    )
            case GroupUpdated():
                if group := self.groups.get(event.group_id):
                    group.name = event.name
                    group.device_ids = event.device_ids
                    group.updated_at = event.updated_at
            case GroupDeleted():
                self.groups.pop(event.group_id, None)

    def rows(self) -> list[Rows]:
        return [
            Rows(
                "devices",
                DeviceRow.__struct_fields__,
                (msgspec.structs.astuple(d) for d in self.devices.values()),
            ),
            Rows(
                "device_groups",
                GroupRow.__struct_fields__,
                (msgspec.structs.astuple(g) for g in self.groups.values()),
            ),
        ]
