"""The execution aggregate's decisions, through the clock seam: waves, limits, offline wait,
silence mid-job, cancel and the reconciler's end. Given events, when time passes (and devices
are or are not online), then these events."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from events.base import Event
from events.execution import (
    Delivery,
    DeviceJobDispatched,
    DeviceResultRecorded,
    DevicesWaiting,
    ExecutionCompleted,
    ExecutionStarted,
)
from services.domain.delivery import checked, wave_sizes
from services.domain.errors import Conflict, ValidationFailed
from services.domain.execution import (
    ExecutionState,
    Presence,
    abandon,
    decide,
    evolve,
    evolve_all,
    fold,
    record_report,
    record_reports,
    request_cancel,
    run_deadline,
)

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
RUN = "run-1"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def started(devices: Sequence[str], delivery: Delivery | None = None) -> ExecutionState:
    event = ExecutionStarted(
        execution_id=RUN,
        task_id="task-1",
        trigger="schedule",
        scheduled_for=T0,
        started_at=T0,
        device_ids=list(devices),
        delivery=delivery or Delivery(),
        job_timeout_seconds=60,
    )
    return fold(RUN, [event])


def online(*devices: str) -> Presence:
    return Presence(online=frozenset(devices))


def apply(state: ExecutionState, events: Iterable[Event]) -> ExecutionState:
    for event in events:
        state = evolve(state, event)
    return state


def dispatched(events: Sequence[Event]) -> list[str]:
    return [d for e in events if isinstance(e, DeviceJobDispatched) for d in e.device_ids]


def results(events: Sequence[Event]) -> dict[str, str]:
    return {e.device_id: e.status for e in events if isinstance(e, DeviceResultRecorded)}


def finish(
    state: ExecutionState, devices: Iterable[str], when: float, status: str = "success"
) -> ExecutionState:
    for device in devices:
        state = apply(state, record_report(state, device, at(when), status))
    return state


def completed(events: Sequence[Event]) -> ExecutionCompleted | None:
    return next((e for e in events if isinstance(e, ExecutionCompleted)), None)


DEVICES = [f"d{i:02d}" for i in range(10)]
ALL_ONLINE = online(*DEVICES)


def test_without_a_policy_every_online_device_starts_at_once() -> None:
    events = decide(started(DEVICES), at(0), ALL_ONLINE)
    assert dispatched(events) == DEVICES


def test_waves_start_one_after_another_and_the_last_size_repeats() -> None:
    state = started(DEVICES, Delivery(waves=[1, "30%"]))
    assert wave_sizes(state.delivery, 10) == [1, 3, 3, 3]
    first = decide(state, at(0), ALL_ONLINE)
    assert dispatched(first) == ["d00"]
    state = apply(state, first)
    assert decide(state, at(1), ALL_ONLINE) == []  # the wave is still running
    state = finish(state, ["d00"], 2)
    second = decide(state, at(2), ALL_ONLINE)
    assert dispatched(second) == ["d01", "d02", "d03"]
    state = finish(apply(state, second), ["d01", "d02", "d03"], 3)
    assert dispatched(decide(state, at(3), ALL_ONLINE)) == ["d04", "d05", "d06"]


def test_a_wave_pause_holds_the_next_wave_until_it_has_passed() -> None:
    state = started(DEVICES[:4], Delivery(waves=[2], wave_pause_seconds=30))
    state = finish(apply(state, decide(state, at(0), ALL_ONLINE)), ["d00", "d01"], 5)
    assert decide(state, at(34), ALL_ONLINE) == []
    assert dispatched(decide(state, at(35), ALL_ONLINE)) == ["d02", "d03"]


def test_concurrency_keeps_that_many_devices_working_at_most() -> None:
    state = started(DEVICES, Delivery(max_concurrency="30%"))
    first = decide(state, at(0), ALL_ONLINE)
    assert dispatched(first) == ["d00", "d01", "d02"]
    state = finish(apply(state, first), ["d01"], 1)
    assert dispatched(decide(state, at(1), ALL_ONLINE)) == ["d03"]


def test_past_max_errors_no_device_starts_and_the_rest_is_skipped() -> None:
    state = started(DEVICES[:5], Delivery(max_errors=1, max_concurrency=2))
    state = apply(state, decide(state, at(0), ALL_ONLINE))
    state = finish(state, ["d00"], 1, "failed")
    state = apply(state, decide(state, at(1), ALL_ONLINE))  # one failure is within the budget
    state = finish(state, ["d01", "d02"], 2, "failed")
    events = decide(state, at(2), ALL_ONLINE)
    assert results(events) == {"d03": "skipped", "d04": "skipped"}
    done = completed(events)
    assert done is not None and done.status == "failed"
    assert done.error_message == (
        "stopped after 3 of 5 devices failed (more than max_errors 1); 2 not started"
    )


def test_an_offline_device_is_unreachable_at_once_without_an_offline_wait() -> None:
    events = decide(started(["a", "b"]), at(0), online("a"))
    assert dispatched(events) == ["a"]
    assert results(events) == {"b": "unreachable"}


def test_an_offline_device_waits_gets_its_job_when_back_and_expires_after_the_wait() -> None:
    state = started(["a", "b", "c"], Delivery(offline_wait_seconds=60))
    first = decide(state, at(0), online("a"))
    assert dispatched(first) == ["a"]
    assert [e.device_ids for e in first if isinstance(e, DevicesWaiting)] == [["b", "c"]]
    state = apply(state, first)
    assert dispatched(decide(state, at(30), online("a", "b"))) == ["b"]  # b is back
    state = apply(state, decide(state, at(30), online("a", "b")))
    assert results(decide(state, at(60), online("a", "b"))) == {"c": "expired"}


def test_a_device_silent_mid_job_waits_then_expires_unless_it_returns() -> None:
    state = started(["a"], Delivery(offline_wait_seconds=120))
    state = apply(state, decide(state, at(0), online("a")))
    silent = decide(state, at(20), online())
    assert [type(e).__name__ for e in silent] == ["DevicesWaiting"]
    state = apply(state, silent)
    assert dispatched(decide(state, at(60), online("a"))) == ["a"]  # back: its job again
    assert results(decide(state, at(120), online())) == {"a": "expired"}


def test_with_no_offline_wait_a_silent_device_expires_instead_of_holding_the_run() -> None:
    state = started(["a"])
    state = apply(state, decide(state, at(0), online("a")))
    state = apply(state, decide(state, at(15), online()))
    events = decide(state, at(15), online())
    assert results(events) == {"a": "expired"}
    assert completed(events) is not None


def test_an_agent_that_never_answers_is_unreachable_and_an_overdue_one_times_out() -> None:
    state = started(["a", "b"])
    state = apply(state, decide(state, at(0), online("a", "b")))
    events = decide(state, at(11), online("a", "b"), unanswered=["a"])
    assert results(events) == {"a": "unreachable"}
    state = apply(state, events)
    assert results(decide(state, at(100), online("a", "b"))) == {"b": "timeout"}


def test_cancel_ends_devices_not_started_and_waits_for_running_ones() -> None:
    state = started(DEVICES[:4], Delivery(max_concurrency=2))
    state = apply(state, decide(state, at(0), ALL_ONLINE))
    state = evolve(state, request_cancel(state, at(1), "wrong package"))
    events = decide(state, at(1), ALL_ONLINE)
    assert results(events) == {"d02": "canceled", "d03": "canceled"}
    assert completed(events) is None  # d00 and d01 are still stopping
    state = finish(apply(state, events), ["d00"], 2, "canceled")
    state = finish(state, ["d01"], 2, "success")  # it finished before the cancel reached it
    done = completed(decide(state, at(2), ALL_ONLINE))
    assert done is not None
    assert (done.status, done.error_message, done.devices_succeeded) == (
        "canceled",
        "canceled: wrong package",
        1,
    )


def test_cancel_twice_or_after_the_end_is_a_conflict() -> None:
    state = started(["a"])
    state = evolve(state, request_cancel(state, at(0)))
    with pytest.raises(Conflict, match="being canceled already"):
        request_cancel(state, at(1))
    state = apply(state, decide(state, at(1), online("a")))
    assert state.completed is not None
    with pytest.raises(Conflict, match="finished already"):
        request_cancel(state, at(2))


def test_a_report_after_the_device_was_settled_changes_nothing() -> None:
    state = started(["a", "b"])
    state = evolve(state, request_cancel(state, at(0)))
    state = apply(state, decide(state, at(0), online("a", "b")))
    assert state.completed is not None
    assert record_report(state, "a", at(1), "success") == []


def test_the_reconciler_times_out_what_is_out_and_skips_what_never_started() -> None:
    state = started(["a", "b"], Delivery(max_concurrency=1))
    state = apply(state, decide(state, at(0), online("a", "b")))
    events = abandon(state, at(999))
    assert results(events) == {"a": "timeout", "b": "skipped"}
    done = completed(events)
    assert done is not None and done.status == "failed"
    assert abandon(apply(state, events), at(1000)) == []  # a second pass changes nothing


def test_the_run_deadline_covers_every_round_and_wait() -> None:
    delivery = Delivery(max_concurrency=5, waves=[10], wave_pause_seconds=30,
                        offline_wait_seconds=100)  # fmt: skip
    deadline = run_deadline(T0, delivery, 20, timedelta(seconds=60))
    # 2 waves of 10, each in 2 rounds of 5: 4 rounds of (10 + 60 + 30) s, a pause, the wait.
    assert deadline == at(100 + 4 * 100 + 30)


@pytest.mark.parametrize(
    ("delivery", "field"),
    [
        (Delivery(offline_wait_seconds=-1), "delivery.offline_wait_seconds"),
        (Delivery(max_concurrency=0), "delivery.max_concurrency"),
        (Delivery(max_concurrency="0%"), "delivery.max_concurrency"),
        (Delivery(max_errors="101%"), "delivery.max_errors"),
        (Delivery(max_errors=-1), "delivery.max_errors"),
        (Delivery(waves=[1, "ten"]), "delivery.waves[1]"),
        (Delivery(wave_pause_seconds=10**9), "delivery.wave_pause_seconds"),
    ],
)
def test_a_policy_out_of_range_names_its_field(delivery: Delivery, field: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        checked(delivery)
    assert refused.value.field == field


def test_a_batch_of_events_folds_to_the_state_one_at_a_time_gives() -> None:
    state = started(DEVICES, Delivery(waves=[2, "50%"], offline_wait_seconds=60))
    history: list[Event] = [
        DeviceJobDispatched(
            execution_id=RUN,
            task_id="task-1",
            device_ids=["d00", "d01", "d00"],
            dispatched_at=at(1),
        ),
        DevicesWaiting(execution_id=RUN, task_id="task-1", device_ids=["d01", "d02"], since=at(2)),
        *record_report(state, "d05", at(3), "success"),  # never dispatched: nothing
        DeviceResultRecorded(
            execution_id=RUN, task_id="task-1", device_id="d00", status="success", recorded_at=at(3)
        ),
        request_cancel(state, at(4)),
    ]
    one_by_one = apply(state, history)
    assert evolve_all(state, history) == one_by_one
    assert evolve_all(state, []) == state
    assert one_by_one.devices["d00"].status == "success"
    assert one_by_one.devices["d01"].status == "waiting"
    assert one_by_one.cancel is not None and one_by_one.version == state.version + len(history)


def test_a_batch_of_reports_records_each_device_once() -> None:
    state = apply(started(DEVICES[:3]), decide(started(DEVICES[:3]), at(0), ALL_ONLINE))
    events = record_reports(
        state,
        at(1),
        [
            ("d00", "success", {"exit_code": 0}),
            ("d00", "failed", {"exit_code": 1}),  # a repeat: the first word counts
            ("d01", "failed", {"error": "boom"}),
            ("d09", "success", {}),  # not a target
        ],
    )
    assert results(events) == {"d00": "success", "d01": "failed"}
    assert len(events) == 2
