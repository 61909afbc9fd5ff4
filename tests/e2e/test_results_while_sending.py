"""Results are recorded while a run's jobs are still going out: a device that answered early
shows its result in GET /api/executions/{id} while later devices have not been sent their job
yet. The executor here sends one job per slice and waits for each device's first word before
the next (DEPLOYX_EXECUTOR_PUBLISH_SLICE=1, _JOBS_IN_FLIGHT=0, a long _PACE_SECONDS), so a
device that keeps quiet holds the sending up for as long as the test wants; a real agent
answers before it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.agent.protocol import results_subject
from tests.e2e.fleet import Fleet, command_task, run_now
from tests.e2e.hostile import HostileDevice, finished
from tests.e2e.processes import wait_until

pytestmark = pytest.mark.e2e

# Long enough that the quiet device holds the sending up for the whole test.
PACE_SECONDS = 600


def answer_at_once(job: dict[str, Any]) -> list[bytes]:
    return finished(job, exit_code=0, stdout="late\n")


async def test_a_result_is_visible_while_later_devices_are_still_being_sent_their_jobs(
    fleet: Fleet, nats_url: str
) -> None:
    fleet.services.env |= {
        "DEPLOYX_EXECUTOR_PUBLISH_SLICE": "1",
        "DEPLOYX_EXECUTOR_JOBS_IN_FLIGHT": "0",
        "DEPLOYX_EXECUTOR_PACE_SECONDS": str(PACE_SECONDS),
    }
    fleet.executor()
    fleet.agent("early-1")
    async with (
        HostileDevice(nats_url, "quiet-1") as quiet,
        HostileDevice(nats_url, "late-1", answer_at_once) as late,
    ):
        await fleet.wait_online(["early-1", "quiet-1", "late-1"])
        task_id, execution_id = await run_now(
            fleet.api, command_task("echo early", ["early-1", "quiet-1", "late-1"])
        )
        shown: dict[str, Any] = {}

        async def early_result_shown() -> bool:
            status, execution = await fleet.api.get(f"/api/executions/{execution_id}")
            assert status == 200, execution
            shown.update(execution)
            details = execution["result"]["execution_details"] if execution["result"] else {}
            return bool(details.get("early-1", {}).get("status") == "success")

        await wait_until(early_result_shown, 30, "early-1's result", fleet.watched)
        assert shown["status"] == "running"
        # quiet-1 was sent its job and holds the rest up: late-1 has not been sent one yet.
        assert [job["payload"]["command"] for job in quiet.jobs] == ["echo early"]
        assert late.jobs == []

        # quiet-1 answers: the sending goes on, late-1 gets its job and answers it.
        for data in finished(quiet.jobs[0], exit_code=0, stdout="quiet\n"):
            await quiet.publish(results_subject("quiet-1"), data)
        execution = await fleet.finished(task_id, execution_id, timeout=30)

    assert execution["status"] == "success", execution
    details = execution["result"]["execution_details"]
    assert {device: details[device]["status"] for device in details} == {
        "early-1": "success",
        "quiet-1": "success",
        "late-1": "success",
    }
    assert details["late-1"]["stdout"] == "late\n"
    assert len(late.jobs) == 1


def cancel_only(job: dict[str, Any]) -> list[bytes]:
    """A device that runs nothing: it answers only a cancel, "canceled"."""
    if job.get("action") != "cancel":
        return []
    report = {"job_id": job["job_id"], "state": "finished", "status": "canceled"}
    return [json.dumps(report).encode()]


def cancel_or_run(job: dict[str, Any]) -> list[bytes]:
    return cancel_only(job) if job.get("action") == "cancel" else answer_at_once(job)


async def test_a_cancel_stops_jobs_that_are_still_going_out(fleet: Fleet, nats_url: str) -> None:
    fleet.services.env |= {
        "DEPLOYX_EXECUTOR_PUBLISH_SLICE": "1",
        "DEPLOYX_EXECUTOR_JOBS_IN_FLIGHT": "0",
        "DEPLOYX_EXECUTOR_PACE_SECONDS": str(PACE_SECONDS),
    }
    fleet.executor()
    fleet.agent("early-1")
    async with (
        HostileDevice(nats_url, "quiet-1", cancel_only) as quiet,
        HostileDevice(nats_url, "late-1", cancel_or_run) as late,
    ):
        await fleet.wait_online(["early-1", "quiet-1", "late-1"])
        task_id, execution_id = await run_now(
            fleet.api, command_task("echo early", ["early-1", "quiet-1", "late-1"])
        )

        async def held_up_on_quiet() -> bool:
            _, execution = await fleet.api.get(f"/api/executions/{execution_id}")
            details = execution["result"]["execution_details"] if execution["result"] else {}
            early = details.get("early-1", {}).get("status")
            return bool(quiet.jobs) and early == "success"

        await wait_until(held_up_on_quiet, 30, "quiet-1 holding the sending up", fleet.watched)
        status, body = await fleet.api.post(f"/api/executions/{execution_id}/cancel")
        assert status == 202, body
        execution = await fleet.finished(task_id, execution_id, timeout=30)

    assert execution["status"] == "canceled", execution
    details = execution["result"]["execution_details"]
    assert {device: details[device]["status"] for device in details} == {
        "early-1": "success",
        "quiet-1": "canceled",
        "late-1": "canceled",
    }
    # late-1's job never went out: it was only told to cancel it (and never started it).
    assert [job["action"] for job in late.jobs] == ["cancel"]
