"""A task's delivery policy and its end, through the API with real services and agents (issue
11): delivery echoed on the task and carried by its runs, end_at and max_runs ending a task
completed, pause_on_failure pausing it with the reason in its history, and their 422s."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.api import assert_invalid, command_task, create_task, instant, task_path
from tests.e2e.fleet import TASKS, Fleet
from tests.e2e.processes import wait_until
from tests.stack import Client

# Prints when it started and ended on the device, in seconds since the epoch.
STAMPED = 'echo "start $(date +%s.%N)"; sleep 1; echo "end $(date +%s.%N)"'


def interval_task(command: str, devices: list[str], every: int, **fields: Any) -> dict[str, Any]:
    return {
        "name": "every few seconds",
        "task_type": "command",
        "recurrence_type": "interval",
        "recurrence_config": {"every_seconds": every},
        "device_ids": devices,
        "task_payload": {"command_payload": {"command": command, "timeout_seconds": 30}},
        **fields,
    }


async def history(api: Client, task_id: str) -> list[dict[str, Any]]:
    status, page = await api.get(task_path(task_id, "events"))
    assert status == 200, page
    return list(page["items"])


async def task_in_status(fleet: Fleet, task_id: str, wanted: str, timeout: float) -> dict[str, Any]:
    """The task once it shows `wanted` (with nothing of it running)."""
    found: dict[str, Any] = {}

    async def reached() -> bool:
        status, task = await fleet.api.get(task_path(task_id))
        assert status == 200, task
        found.update(task)
        return bool(task["status"] == wanted)

    await wait_until(reached, timeout, f"task {task_id} {wanted}", fleet.watched)
    return found


def occurrences(events: list[dict[str, Any]]) -> list[tuple[str, datetime]]:
    """What the ticker recorded for each scheduled occurrence: (event type, scheduled_for)."""
    return [
        (event["type"], instant(event["data"]["scheduled_for"]))
        for event in events
        if event["type"] in ("RunMissed", "RunSkipped")
        or (event["type"] == "TaskDue" and event["data"]["trigger"] == "schedule")
    ]


# --- delivery ---------------------------------------------------------------------------------


async def test_a_tasks_delivery_is_echoed_and_its_run_goes_to_one_device_after_the_other(
    fleet: Fleet,
) -> None:
    fleet.executor()
    for device in ("dev-a", "dev-b"):
        fleet.agent(device)
    await fleet.wait_online(["dev-a", "dev-b"])
    delivery = {"waves": [1], "max_concurrency": 1}
    body = command_task(device_ids=["dev-a", "dev-b"], delivery=delivery)
    body["task_payload"] = {"command_payload": {"command": STAMPED}}

    # Created with a delivery policy: the task shows it, on create, get and list
    task = await create_task(fleet.api, body)
    assert task["delivery"] == delivery
    assert (await fleet.api.get(task_path(task["id"])))[1]["delivery"] == delivery
    _, page = await fleet.api.get(TASKS)
    assert [item["delivery"] for item in page["items"]] == [delivery]

    # Run: the execution ran with that policy
    status, accepted = await fleet.api.post(task_path(task["id"], "execute"))
    assert status == 202, accepted
    run = await fleet.finished(task["id"], accepted["execution_id"])
    assert run["status"] == "success", run
    status, execution = await fleet.api.get(f"/api/executions/{accepted['execution_id']}")
    assert (status, execution["delivery"]) == (200, delivery)
    events = await history(fleet.api, task["id"])
    [started] = [event for event in events if event["type"] == "ExecutionStarted"]
    assert started["data"]["delivery"] == delivery

    # One device at a time: two dispatches of one device each, the second once the first
    # device's result was in, and the second device started after the first had ended
    dispatched = [event for event in events if event["type"] == "DeviceJobDispatched"]
    assert [event["data"]["device_ids"] for event in dispatched] in (
        [["dev-a"], ["dev-b"]],
        [["dev-b"], ["dev-a"]],
    )
    first, second = (event["data"]["device_ids"][0] for event in dispatched)
    [first_result] = [
        event
        for event in events
        if event["type"] == "DeviceResultRecorded" and event["data"]["device_id"] == first
    ]
    assert events.index(first_result) < events.index(dispatched[1])
    assert instant(dispatched[1]["data"]["dispatched_at"]) >= instant(
        first_result["data"]["recorded_at"]
    )
    stamps = {
        device: dict(line.split() for line in result["stdout"].splitlines())
        for device, result in run["result"]["execution_details"].items()
    }
    assert float(stamps[second]["start"]) >= float(stamps[first]["end"]), stamps


async def test_delivery_end_at_max_runs_and_pause_on_failure_default_to_the_old_meaning(
    operator: Client,
) -> None:
    task = await create_task(operator, command_task())
    assert {
        key: task[key]
        for key in ("delivery", "end_at", "max_runs", "pause_on_failure", "scheduled_runs")
    } == {
        "delivery": {},
        "end_at": None,
        "max_runs": None,
        "pause_on_failure": False,
        "scheduled_runs": 0,
    }


async def test_put_delivery_replaces_it_and_end_at_in_the_past_completes_the_task(
    operator: Client,
) -> None:
    task = await create_task(operator, command_task(delivery={"waves": [1, "50%"]}))
    path = task_path(task["id"])

    status, changed = await operator.put(path, {"delivery": {"max_errors": "10%"}})
    assert (status, changed["delivery"]) == (200, {"max_errors": "10%"})

    # An end already past: nothing is left to run, so the task is completed
    status, ended = await operator.put(path, {"end_at": "2020-01-01T00:00:00Z"})
    assert status == 200, ended
    assert (ended["status"], ended["next_run_time"]) == ("completed", None)
    assert instant(ended["end_at"]) == datetime(2020, 1, 1, tzinfo=UTC)
    status, refused = await operator.post(task_path(task["id"], "pause"))
    assert status == 409, refused

    # No end any more: it is pending again, with its next occurrence
    status, again = await operator.put(path, {"end_at": None})
    assert status == 200, again
    assert (again["status"], again["end_at"]) == ("pending", None)
    assert instant(again["next_run_time"]) > datetime.now(UTC)


async def test_bad_delivery_end_at_max_runs_and_pause_on_failure_are_422s_naming_the_field(
    operator: Client,
) -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"delivery": {"max_concurrency": 0}}, "delivery.max_concurrency", "from 1"),
        ({"delivery": {"max_concurrency": "0%"}}, "delivery.max_concurrency", "percentage"),
        ({"delivery": {"max_errors": "101%"}}, "delivery.max_errors", "percentage"),
        ({"delivery": {"waves": [1, "half"]}}, "delivery.waves[1]", "percentage"),
        ({"delivery": {"offline_wait_seconds": -5}}, "delivery.offline_wait_seconds", ""),
        ({"delivery": {"max_concurency": 1}}, "delivery.max_concurency", "not a known field"),
        ({"delivery": {"waves": "1"}}, "delivery.waves", "must be a list, not text"),
        ({"max_runs": 0}, "max_runs", "must be at least 1"),
        ({"max_runs": True}, "max_runs", "must be a whole number or null"),
        ({"end_at": "next tuesday"}, "end_at", "must be an ISO 8601 date and time"),
        ({"end_at": "2020-01-01T00:00:00Z"}, "end_at", "before the task's first occurrence"),
        ({"pause_on_failure": "yes"}, "pause_on_failure", "must be true or false"),
    ]
    for fields, field, why in cases:
        assert_invalid(await operator.post(TASKS, command_task(**fields)), field, why)
    task = await create_task(operator, command_task())
    for fields, field, why in cases[:-2] + cases[-1:]:
        assert_invalid(await operator.put(task_path(task["id"]), fields), field, why)


# --- the end of a task, with the ticker -------------------------------------------------------


async def test_an_interval_task_with_end_at_fires_until_then_and_ends_completed(
    fleet: Fleet,
) -> None:
    fleet.executor()
    fleet.agent("dev-a")
    fleet.services.start("ticker", "ticker")
    await fleet.wait_online(["dev-a"])
    end_at = datetime.now(UTC) + timedelta(seconds=5)

    task = await create_task(
        fleet.api, interval_task("true", ["dev-a"], 2, end_at=end_at.isoformat())
    )
    ended = await task_in_status(fleet, task["id"], "completed", timeout=30)

    assert (ended["next_run_time"], instant(ended["end_at"])) == (None, end_at)
    events = await history(fleet.api, task["id"])
    created = instant(events[0]["data"]["created_at"])
    # Every 2 s from its creation, as long as that is not after end_at, and nothing later
    expected = [created + timedelta(seconds=2 * n) for n in range(1, 4)]
    expected = [moment for moment in expected if moment <= end_at]
    recorded = occurrences(events)
    assert [moment for _, moment in recorded] == expected
    assert [kind for kind, _ in recorded].count("TaskDue") >= 1
    last = next(e for e in reversed(events) if e["type"] in ("TaskDue", "RunSkipped", "RunMissed"))
    assert (last["data"]["next_run_time"], last["data"]["completed_by"]) == (None, "end_at")


async def test_max_runs_two_ends_an_interval_task_completed_after_two_scheduled_runs(
    fleet: Fleet,
) -> None:
    fleet.executor()
    fleet.agent("dev-a")
    fleet.services.start("ticker", "ticker")
    await fleet.wait_online(["dev-a"])

    task = await create_task(fleet.api, interval_task("true", ["dev-a"], 1, max_runs=2))
    # A run by hand: it does not count toward max_runs
    status, accepted = await fleet.api.post(task_path(task["id"], "execute"))
    assert status == 202, accepted
    ended = await task_in_status(fleet, task["id"], "completed", timeout=30)

    assert (ended["next_run_time"], ended["scheduled_runs"], ended["max_runs"]) == (None, 2, 2)
    events = await history(fleet.api, task["id"])
    triggers = [event["data"]["trigger"] for event in events if event["type"] == "TaskDue"]
    assert sorted(triggers) == ["manual", "schedule", "schedule"]
    scheduled = [
        event
        for event in events
        if event["type"] == "TaskDue" and event["data"]["trigger"] == "schedule"
    ]
    assert [event["data"]["completed_by"] for event in scheduled] == [None, "max_runs"]
    assert scheduled[-1]["data"]["next_run_time"] is None
    _, runs = await fleet.api.get(task_path(task["id"], "executions"))
    assert sorted(run["trigger"] for run in runs["items"]) == ["manual", "schedule", "schedule"]


async def test_pause_on_failure_pauses_after_a_failing_scheduled_run_saying_why(
    fleet: Fleet,
) -> None:
    fleet.executor()
    fleet.agent("dev-a")
    fleet.services.start("ticker", "ticker")
    await fleet.wait_online(["dev-a"])

    task = await create_task(
        fleet.api, interval_task("echo broken >&2; exit 3", ["dev-a"], 2, pause_on_failure=True)
    )
    paused = await task_in_status(fleet, task["id"], "paused", timeout=30)

    assert (paused["next_run_time"], paused["pause_on_failure"]) == (None, True)
    events = await history(fleet.api, task["id"])
    [pause] = [event for event in events if event["type"] == "TaskPaused"]
    # Paused by the scheduler, after its run's end, naming the run and what went wrong
    completed = [event for event in events if event["type"] == "ExecutionCompleted"]
    failed = completed[-1]["data"]
    assert failed["status"] == "failed"
    assert events.index(completed[-1]) < events.index(pause)
    _, execution = await fleet.api.get(f"/api/executions/{failed['execution_id']}")
    assert execution["trigger"] == "schedule"
    assert pause["metadata"]["user"] == "scheduler"
    assert pause["metadata"]["reason"] == (
        f"run {failed['execution_id']} failed: {execution['error_message']}"
    )
    assert execution["error_message"], execution
