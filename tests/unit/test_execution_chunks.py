"""A run with more targets than one event may list: its start and its steps split into events
within the log's bound, and the fold of the pieces is the run as one event would have it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from events.base import Event
from events.execution import (
    Delivery,
    DeviceJobDispatched,
    DevicesWaiting,
    ExecutionStarted,
    ExecutionTargetsAdded,
)
from services.domain.errors import ValidationFailed
from services.domain.execution import (
    DEVICES_PER_EVENT,
    Presence,
    chunked,
    decide,
    evolve_all,
    fold,
    split_start,
)
from services.infra.settings import from_env
from services.infra.store import encode_bounded

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
RUN = "run-1"


def start(devices: Sequence[str], delivery: Delivery | None = None) -> ExecutionStarted:
    return ExecutionStarted(
        execution_id=RUN,
        task_id="task-1",
        trigger="manual",
        scheduled_for=T0,
        started_at=T0,
        device_ids=list(devices),
        delivery=delivery or Delivery(),
        job_timeout_seconds=60,
    )


Listing = ExecutionTargetsAdded | DeviceJobDispatched | DevicesWaiting


def ids(events: Sequence[Event], kind: type[Listing]) -> list[list[str]]:
    return [list(e.device_ids) for e in events if isinstance(e, kind)]


def test_chunked_keeps_order_and_rejects_a_size_below_one() -> None:
    assert chunked(["a", "b", "c", "d", "e"], 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert chunked([], 3) == []
    with pytest.raises(ValueError, match="size must be at least 1"):
        chunked(["a"], 0)


def test_a_start_with_more_targets_than_one_event_lists_goes_in_pieces_in_target_order() -> None:
    devices = [f"d{i}" for i in range(7)]
    events = split_start(start(devices), per_event=3)
    first, *rest = events
    assert isinstance(first, ExecutionStarted)
    assert (first.device_ids, first.devices_targeted) == (["d0", "d1", "d2"], 7)
    assert [type(e) for e in rest] == [ExecutionTargetsAdded, ExecutionTargetsAdded]
    assert ids(rest, ExecutionTargetsAdded) == [["d3", "d4", "d5"], ["d6"]]
    state = fold(RUN, events, "task-1")
    assert state.targets == devices
    assert all(state.devices[d].status == "pending" for d in devices)
    assert state.version == 3


def test_a_start_that_fits_is_one_event_as_before() -> None:
    assert split_start(start(["a", "b"]), per_event=3) == [
        msgspec.structs.replace(start(["a", "b"]), devices_targeted=2)
    ]
    (empty,) = split_start(start([]), per_event=3)
    assert isinstance(empty, ExecutionStarted) and empty.device_ids == []


def test_the_fold_of_the_pieces_decides_as_one_event_of_every_target_would() -> None:
    devices = [f"d{i}" for i in range(10)]
    delivery = Delivery(waves=[4, "100%"])
    whole = fold(RUN, [start(devices, delivery)], "task-1")
    pieces = fold(RUN, split_start(start(devices, delivery), per_event=3), "task-1")
    everyone = Presence(online=frozenset(devices))
    # The first wave is the first 4 targets, though they span two events.
    assert ids(decide(pieces, T0, everyone), DeviceJobDispatched) == [devices[:4]]
    assert ids(decide(whole, T0, everyone), DeviceJobDispatched) == [devices[:4]]


def test_jobs_and_waits_of_one_step_go_in_events_of_at_most_per_event_devices() -> None:
    devices = [f"d{i}" for i in range(8)]
    state = fold(RUN, split_start(start(devices, Delivery(offline_wait_seconds=60)), 3))
    on, off = devices[:5], devices[5:]
    events = decide(state, T0, Presence(online=frozenset(on)), per_event=2)
    assert ids(events, DeviceJobDispatched) == [["d0", "d1"], ["d2", "d3"], ["d4"]]
    assert ids(events, DevicesWaiting) == [["d5", "d6"], ["d7"]]
    after = evolve_all(state, events)
    assert after.with_status("running") == on
    assert after.with_status("waiting") == off
    # Fallen silent mid-job, the running ones wait again, in pieces too.
    later = decide(after, T0 + timedelta(seconds=20), Presence(online=frozenset()), per_event=2)
    assert ids(later, DevicesWaiting) == [["d0", "d1"], ["d2", "d3"], ["d4"]]


def test_a_fleet_of_100000_long_device_ids_starts_and_dispatches_within_the_event_bound() -> None:
    devices = [f"{i:06d}".ljust(128, "x") for i in range(100_000)]  # the longest ids allowed
    started = split_start(start(devices))
    encode_bounded(started)  # raises TooLarge if one event is over the bound
    assert len(started) == -(-100_000 // DEVICES_PER_EVENT)
    state = fold(RUN, started)
    events = decide(state, T0, Presence(online=frozenset(devices)))
    encode_bounded(events)
    assert [d for part in ids(events, DeviceJobDispatched) for d in part] == devices


def test_devices_per_event_is_bounded_where_it_is_set() -> None:
    assert from_env({"DEPLOYX_DEVICES_PER_EVENT": "10"}).devices_per_event == 10
    for wrong in ("0", "3501"):
        with pytest.raises((msgspec.ValidationError, ValidationFailed), match="devices_per_event"):
            from_env({"DEPLOYX_DEVICES_PER_EVENT": wrong})
