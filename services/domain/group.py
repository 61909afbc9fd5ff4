"""The device group aggregate: create, update, delete; one stream per group."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType
from msgspec.structs import replace

from events.base import Event
from events.device import GroupCreated, GroupDeleted, GroupUpdated
from services.domain.errors import Conflict, NotFound
from services.domain.task_spec import MAX_TARGETS, DeviceId, unique

GroupName = Annotated[str, Meta(min_length=1, max_length=200)]


class GroupInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: GroupName
    device_ids: Annotated[list[DeviceId], Meta(max_length=MAX_TARGETS)] = []


class GroupPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: GroupName | UnsetType = UNSET
    device_ids: Annotated[list[DeviceId], Meta(max_length=MAX_TARGETS)] | UnsetType = UNSET


class GroupState(msgspec.Struct, kw_only=True):
    group_id: int
    version: int = 0
    created: GroupCreated | None = None
    name: str = ""
    device_ids: list[str] = []
    deleted: bool = False


class CreateGroup(msgspec.Struct, frozen=True, kw_only=True):
    group: GroupInput
    user_id: str
    now: datetime


class UpdateGroup(msgspec.Struct, frozen=True, kw_only=True):
    patch: GroupPatch
    now: datetime


class DeleteGroup(msgspec.Struct, frozen=True, kw_only=True):
    now: datetime


GroupCommand = CreateGroup | UpdateGroup | DeleteGroup


def stream_id(group_id: int) -> str:
    return f"group-{group_id}"


def decide(state: GroupState, command: GroupCommand) -> list[Event]:
    if isinstance(command, CreateGroup):
        if state.created is not None:
            raise Conflict(f"group {state.group_id} already exists")
        return [
            GroupCreated(
                group_id=state.group_id,
                name=command.group.name,
                device_ids=unique(command.group.device_ids),
                user_id=command.user_id,
                created_at=command.now,
            )
        ]
    if state.created is None or state.deleted:
        raise NotFound(f"group {state.group_id} does not exist")
    if isinstance(command, DeleteGroup):
        return [GroupDeleted(group_id=state.group_id, deleted_at=command.now)]
    patch = command.patch
    return [
        GroupUpdated(
            group_id=state.group_id,
            name=state.name if isinstance(patch.name, UnsetType) else patch.name,
            device_ids=(
                state.device_ids
                if isinstance(patch.device_ids, UnsetType)
                else unique(patch.device_ids)
            ),
            updated_at=command.now,
        )
    ]


def evolve(state: GroupState, event: Event) -> GroupState:
    state = replace(state, version=state.version + 1)
    match event:
        case GroupCreated():
            return replace(state, created=event, name=event.name, device_ids=event.device_ids)
        case GroupUpdated():
            return replace(state, name=event.name, device_ids=event.device_ids)
        case GroupDeleted():
            return replace(state, deleted=True)
    return state
