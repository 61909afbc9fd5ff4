"""Hostile devices, speaking the real protocol on their own subjects (issue 9, attacks 1-3):
each bad message is refused at the boundary with a trace an admin can see, and a healthy
device's run still succeeds within seconds."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from services.agent.protocol import DECODE_ERRORS, Heartbeat, JobReport, heartbeat_subject
from tests.e2e.fleet import Fleet, command_task, run_now
from tests.e2e.hostile import HostileDevice, finished, heartbeat
from tests.e2e.processes import wait_until
from tests.e2e.protocol_fuzz import examples, messages
from tests.stack import Client

pytestmark = pytest.mark.e2e


async def rejections_of(api: Client, device_id: str) -> list[dict[str, Any]]:
    path = f"/api/admin/rejected-messages?device_id={device_id}&limit=1000"  # every reason
    status, page = await api.get(path)
    assert status == 200, page
    return list(page["items"])


async def wait_for_rejection(fleet: Fleet, device_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def refused() -> bool:
        found[:] = await rejections_of(fleet.api, device_id)
        return bool(found)

    await wait_until(refused, 15, f"a message of {device_id} to be refused", fleet.watched)
    return found


async def results_of(fleet: Fleet, task_id: str, execution_id: str) -> dict[str, Any]:
    execution = await fleet.finished(task_id, execution_id, timeout=30)
    return dict(execution["result"]["execution_details"])


def _refused_or_clamped(data: bytes) -> bool:
    """What the registry must refuse or correct: undecodable, another device's, or a start
    time in the future (the test runs well within the registry's 5 minutes of skew)."""
    try:
        beat = msgspec.json.decode(data, type=Heartbeat)
    except DECODE_ERRORS:
        return True
    return beat.device_id != "fuzz-1" or beat.started_at > datetime.now(UTC)


async def a_healthy_run_succeeds(fleet: Fleet, device_id: str) -> None:
    """The pipeline still moves for everyone else: a new task's run on a good device."""
    task_id, execution_id = await run_now(fleet.api, command_task("echo fine", [device_id]))
    execution = await fleet.finished(task_id, execution_id, timeout=15)
    assert execution["status"] == "success", execution


async def test_a_result_with_an_exit_code_out_of_range_fails_only_that_device(
    fleet: Fleet, nats_url: str
) -> None:
    fleet.executor()
    fleet.agent("good-1")

    def huge_exit_code(job: dict[str, Any]) -> list[bytes]:
        return finished(job, status="failed", exit_code=1099511627776)

    async with HostileDevice(nats_url, "evil-1", huge_exit_code):
        await fleet.wait_online(["good-1", "evil-1"])
        task_id, execution_id = await run_now(
            fleet.api, command_task("echo hello", ["good-1", "evil-1"])
        )
        details = await results_of(fleet, task_id, execution_id)

        assert details["good-1"]["status"] == "success"
        assert details["evil-1"]["status"] == "failed"
        assert details["evil-1"]["exit_code"] is None
        assert "the agent's report was refused" in details["evil-1"]["error"]
        assert "exit_code" in details["evil-1"]["error"]
        (rejected,) = await wait_for_rejection(fleet, "evil-1")
        assert rejected["source"] == "result"
        assert "exit_code" in rejected["reason"]
        assert "1099511627776" in rejected["sample"]
        await a_healthy_run_succeeds(fleet, "good-1")


async def test_a_heartbeat_with_an_absurd_interval_is_refused_and_presence_goes_on(
    fleet: Fleet, nats_url: str
) -> None:
    fleet.executor()
    fleet.agent("good-1")
    async with HostileDevice(nats_url, "evil-2") as evil:
        evil.beat = heartbeat("evil-2", interval_seconds=1e300)
        (rejected,) = await wait_for_rejection(fleet, "evil-2")
        assert rejected["source"] == "heartbeat"
        assert "interval_seconds" in rejected["reason"]

        # Registry flushes go on: a device that connects now is online and runs a job.
        fleet.agent("good-2")
        await fleet.wait_online(["good-1", "good-2"])
        await a_healthy_run_succeeds(fleet, "good-2")
        _, devices = await fleet.api.get("/api/devices")
        assert "evil-2" not in {device["id"] for device in devices["items"]}
        assert (await rejections_of(fleet.api, "evil-2"))[0]["count"] >= 2  # still refused


async def test_heartbeats_lying_about_time_or_another_device_are_refused(
    fleet: Fleet, nats_url: str
) -> None:
    fleet.executor()
    fleet.agent("good-1")
    async with HostileDevice(nats_url, "evil-3") as evil:
        evil.beat = json.dumps(heartbeat("good-1", hostname="not me")).encode()
        (rejected,) = await wait_for_rejection(fleet, "evil-3")
        assert rejected["reason"] == "a heartbeat for another device"

        evil.beat = heartbeat("evil-3", started_at="2026-01-01T00:00:00")  # no zone
        await wait_until(
            lambda: _has_reason(fleet.api, "evil-3", "timezone"), 15, "a naive time refused", []
        )
    await fleet.wait_online(["good-1"])
    _, devices = await fleet.api.get("/api/devices")
    good = next(device for device in devices["items"] if device["id"] == "good-1")
    assert good["hostname"] != "not me"
    await a_healthy_run_succeeds(fleet, "good-1")


async def _has_reason(api: Client, device_id: str, fragment: str) -> bool:
    return any(fragment in item["reason"] for item in await rejections_of(api, device_id))


async def test_output_with_nul_bytes_is_stored_and_invalid_utf8_is_refused(
    fleet: Fleet, nats_url: str
) -> None:
    fleet.executor()
    fleet.agent("good-1")

    def with_nul(job: dict[str, Any]) -> list[bytes]:
        # Valid JSON, not storable text: PostgreSQL refuses NUL in text and jsonb.
        return finished(job, exit_code=0, stdout="x\u0000y", stderr="\u0000")

    def invalid_utf8(job: dict[str, Any]) -> list[bytes]:
        accepted, report = finished(job, exit_code=0)
        return [accepted, report[:-1] + b', "stdout": "x\xff\xfey"}']

    async with (
        HostileDevice(nats_url, "evil-4", with_nul),
        HostileDevice(nats_url, "evil-6", invalid_utf8),
    ):
        await fleet.wait_online(["good-1", "evil-4", "evil-6"])
        task_id, execution_id = await run_now(
            fleet.api, command_task("printf 'a\\000b'", ["good-1", "evil-4", "evil-6"])
        )
        details = await results_of(fleet, task_id, execution_id)

    assert (details["good-1"]["status"], details["good-1"]["stdout"]) == ("success", "a\ufffdb")
    assert details["evil-4"]["status"] == "success"
    assert (details["evil-4"]["stdout"], details["evil-4"]["stderr"]) == ("x\ufffdy", "\ufffd")
    assert details["evil-6"]["status"] == "failed"
    assert "Invalid UTF-8" in details["evil-6"]["error"]
    await a_healthy_run_succeeds(fleet, "good-1")


async def test_an_output_larger_than_the_limit_is_cut_by_the_executor(
    fleet: Fleet, nats_url: str
) -> None:
    fleet.executor()

    def flood(job: dict[str, Any]) -> list[bytes]:
        return finished(job, exit_code=0, stdout="é" * 100_000, error="e" * 100_000)

    async with HostileDevice(nats_url, "evil-5", flood):
        await fleet.wait_online(["evil-5"])
        task_id, execution_id = await run_now(fleet.api, command_task("true", ["evil-5"]))
        details = await results_of(fleet, task_id, execution_id)

    stdout = details["evil-5"]["stdout"]
    assert stdout.startswith("é" * 1000)
    assert stdout.endswith("[... output truncated at 64 KiB]")
    assert len(stdout.encode()) <= 64 * 1024 + 64
    assert len(details["evil-5"]["error"].encode()) <= 4 * 1024 + 8


async def test_a_fuzzed_agent_protocol_stalls_nothing(fleet: Fleet, nats_url: str) -> None:
    """Results and heartbeats drawn from the protocol's own msgspec types, with fields broken,
    dropped or replaced by edge values, and raw non-JSON: every run still completes."""
    fleet.executor()
    fleet.agent("good-1")
    reports_per_job = 100

    def fuzzed_then_honest(job: dict[str, Any]) -> list[bytes]:
        fuzzed = examples(messages(JobReport, {"job_id": job["job_id"]}), reports_per_job)
        return [*fuzzed, *finished(job, exit_code=0)]

    async with HostileDevice(nats_url, "fuzz-1", fuzzed_then_honest) as fuzz:
        await fleet.wait_online(["good-1", "fuzz-1"])
        beats = examples(messages(Heartbeat, {"device_id": "fuzz-1"}), 300)
        for beat in beats:
            await fuzz.publish(heartbeat_subject("fuzz-1"), beat)
        # Each one refused (or clamped) is counted where an admin sees it, none more.
        expected = sum(1 for beat in beats if _refused_or_clamped(beat))
        counted: list[int] = []

        async def all_refused() -> bool:
            items = await rejections_of(fleet.api, "fuzz-1")
            counted[:] = [sum(i["count"] for i in items if i["source"] == "heartbeat")]
            return counted[0] >= expected

        await wait_until(all_refused, 15, "every bad heartbeat refused", fleet.watched)
        assert counted == [expected]
        for run in range(3):
            task_id, execution_id = await run_now(
                fleet.api, command_task(f"echo run {run}", ["good-1", "fuzz-1"])
            )
            details = await results_of(fleet, task_id, execution_id)
            assert details["good-1"]["status"] == "success", details
            assert details["fuzz-1"]["status"] in ("success", "failed", "timeout"), details

        sources = {item["source"] for item in await rejections_of(fleet.api, "fuzz-1")}
        assert sources == {"heartbeat", "result"}
        await fleet.wait_online(["good-1", "fuzz-1"])  # valid heartbeats still count
    await a_healthy_run_succeeds(fleet, "good-1")


async def test_bad_capabilities_are_refused_while_the_device_stays_present(
    fleet: Fleet, nats_url: str
) -> None:
    async with HostileDevice(nats_url, "evil-4") as evil:
        evil.beat = heartbeat("evil-4", capabilities={"shells": ["bash", "fish"], "os": "linux"})
        (rejected,) = await wait_for_rejection(fleet, "evil-4")
        assert rejected["source"] == "heartbeat"
        assert "$.capabilities.shells[1]" in rejected["reason"]
        await fleet.wait_online(["evil-4"])
        _, devices = await fleet.api.get("/api/devices")
        (device,) = [device for device in devices["items"] if device["id"] == "evil-4"]
        assert device["capabilities"] == {}  # announced nothing it may be trusted with
