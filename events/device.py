"""Events of the device registry and of device groups (category "devices")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from events.base import Event


class DeviceRegistered(Event, frozen=True, kw_only=True, tag="DeviceRegistered"):
    """An agent announced itself (first time, or with changed facts)."""

    device_id: str
    hostname: str = ""
    os: str = ""
    agent_version: str = ""
    labels: dict[str, Any] = {}
    registered_at: datetime
    # What the device can run (services/agent/protocol.py Capabilities); {} from older agents.
    capabilities: dict[str, Any] = {}


class DeviceWentOffline(Event, frozen=True, kw_only=True, tag="DeviceWentOffline"):
    device_id: str
    last_seen: datetime


class GroupCreated(Event, frozen=True, kw_only=True, tag="GroupCreated"):
    group_id: int
    name: str
    device_ids: list[str] = []
    user_id: str = ""
    created_at: datetime


class GroupUpdated(Event, frozen=True, kw_only=True, tag="GroupUpdated"):
    group_id: int
    name: str
    device_ids: list[str]
    updated_at: datetime


class GroupDeleted(Event, frozen=True, kw_only=True, tag="GroupDeleted"):
    group_id: int
    deleted_at: datetime


DEVICE_EVENTS = (DeviceRegistered, DeviceWentOffline, GroupCreated, GroupUpdated, GroupDeleted)
