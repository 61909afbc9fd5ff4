"""The device group aggregate: given past events, when a command, then these events."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from events.base import Event
from events.device import GroupCreated, GroupDeleted, GroupUpdated
from services.domain.errors import Conflict, DomainError, NotFound
from services.domain.group import (
    CreateGroup,
    DeleteGroup,
    GroupCommand,
    GroupInput,
    GroupPatch,
    GroupState,
    UpdateGroup,
    decide,
    evolve,
    stream_id,
)

GROUP_ID = 7
NOW = datetime(2026, 6, 1, 10, tzinfo=UTC)
LATER = datetime(2026, 6, 1, 11, tzinfo=UTC)


def given(*events: Event) -> GroupState:
    """The state of GROUP_ID after these past events."""
    state = GroupState(group_id=GROUP_ID)
    for event in events:
        state = evolve(state, event)
    return state


def then_rejected(
    state: GroupState, command: GroupCommand, error: type[DomainError], says: str
) -> None:
    with pytest.raises(error, match=re.escape(says)) as caught:
        decide(state, command)
    assert type(caught.value) is error


def create(now: datetime = NOW, **group: Any) -> CreateGroup:
    body: dict[str, Any] = {"name": "edge", "device_ids": ["d1", "d2"]} | group
    return CreateGroup(group=msgspec.convert(body, GroupInput), user_id="alice", now=now)


def update(**patch: Any) -> UpdateGroup:
    return UpdateGroup(patch=msgspec.convert(patch, GroupPatch), now=LATER)


CREATED = GroupCreated(
    group_id=GROUP_ID, name="edge", device_ids=["d1", "d2"], user_id="alice", created_at=NOW
)
DELETED = GroupDeleted(group_id=GROUP_ID, deleted_at=LATER)


def test_stream_id() -> None:
    assert stream_id(GROUP_ID) == "group-7"


def test_create_a_group_dedupes_devices_in_order() -> None:
    events = decide(given(), create(device_ids=["d2", "d1", "d2", "d3", "d1"]))

    assert events == [
        GroupCreated(
            group_id=GROUP_ID,
            name="edge",
            device_ids=["d2", "d1", "d3"],
            user_id="alice",
            created_at=NOW,
        )
    ]


def test_create_an_empty_group() -> None:
    events = decide(given(), CreateGroup(group=GroupInput(name="empty"), user_id="bob", now=NOW))

    assert events == [
        GroupCreated(group_id=GROUP_ID, name="empty", device_ids=[], user_id="bob", created_at=NOW)
    ]


def test_created_group_state() -> None:
    assert given(CREATED) == GroupState(
        group_id=GROUP_ID, version=1, created=CREATED, name="edge", device_ids=["d1", "d2"]
    )


@pytest.mark.parametrize("history", [(CREATED,), (CREATED, DELETED)], ids=["live", "deleted"])
def test_create_twice_conflicts(history: tuple[Event, ...]) -> None:
    then_rejected(given(*history), create(LATER), Conflict, f"group {GROUP_ID} already exists")


def test_update_name_only_keeps_devices() -> None:
    events = decide(given(CREATED), update(name="core"))

    assert events == [
        GroupUpdated(group_id=GROUP_ID, name="core", device_ids=["d1", "d2"], updated_at=LATER)
    ]


def test_update_devices_only_keeps_name_and_dedupes() -> None:
    events = decide(given(CREATED), update(device_ids=["d3", "d1", "d3"]))

    assert events == [
        GroupUpdated(group_id=GROUP_ID, name="edge", device_ids=["d3", "d1"], updated_at=LATER)
    ]


def test_update_devices_to_none() -> None:
    events = decide(given(CREATED), update(device_ids=[]))

    assert events == [GroupUpdated(group_id=GROUP_ID, name="edge", device_ids=[], updated_at=LATER)]


def test_update_builds_on_the_latest_update() -> None:
    renamed = GroupUpdated(
        group_id=GROUP_ID, name="core", device_ids=["d1", "d2"], updated_at=LATER
    )

    events = decide(given(CREATED, renamed), update(device_ids=["d9"]))

    assert events == [
        GroupUpdated(group_id=GROUP_ID, name="core", device_ids=["d9"], updated_at=LATER)
    ]
    assert given(CREATED, renamed, *events) == GroupState(
        group_id=GROUP_ID, version=3, created=CREATED, name="core", device_ids=["d9"]
    )


def test_delete_a_group() -> None:
    events = decide(given(CREATED), DeleteGroup(now=LATER))

    assert events == [DELETED]
    assert given(CREATED, DELETED) == GroupState(
        group_id=GROUP_ID,
        version=2,
        created=CREATED,
        name="edge",
        device_ids=["d1", "d2"],
        deleted=True,
    )


@pytest.mark.parametrize("history", [(), (CREATED, DELETED)], ids=["missing", "deleted"])
@pytest.mark.parametrize(
    "command", [update(name="core"), DeleteGroup(now=LATER)], ids=["update", "delete"]
)
def test_commands_on_a_missing_or_deleted_group_are_not_found(
    history: tuple[Event, ...], command: GroupCommand
) -> None:
    then_rejected(given(*history), command, NotFound, f"group {GROUP_ID} does not exist")
