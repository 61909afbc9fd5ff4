"""The file server hands out a job's file only while the job's run may still be working, and at
a bounded rate per device: the real agent asking after its run's deadline is refused, and a
device flooding the server is held to its rate while another device's download goes through.
Both refusals are listed for admins like any refused device message."""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec
import nats.aio.msg
import pytest

from services.agent.file_protocol import STATUS, ChunkRequest, files_subject
from services.domain.file_grants import EXPIRED
from services.executor.file_server import TOLD_EVERY, TOO_MANY
from services.executor.run import job_id
from services.executor.spec import RunSpec
from services.executor.targets import job_for
from tests.e2e.fleet import Fleet, run_now
from tests.e2e.flooder import flooding
from tests.e2e.job_sender import job_sender
from tests.e2e.processes import wait_until
from tests.integration.file_jobs import agent_connection, file_run
from tests.stack import Client

pytestmark = pytest.mark.e2e

FILES = "file_deployment"
RATE, BURST = 20, 20  # the executor's limits in the flood test: a flood is far over them


async def upload(api: Client, content: bytes) -> str:
    status, stored = await api.post(
        "/api/files?name=app.conf",
        data=io.BytesIO(content),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert status == 201, stored
    return str(stored["file_id"])


def deployment(file_id: str, destination: Path) -> dict[str, object]:
    return {"file_payload": {"file_id": file_id, "destination": str(destination)}}


async def refusals(api: Client, device_id: str) -> dict[str, int]:
    """What the admin sees refused of the device's file requests: reason -> count."""
    status, page = await api.get(f"/api/admin/rejected-messages?device_id={device_id}")
    assert status == 200, page
    return {r["reason"]: r["count"] for r in page["items"] if r["source"] == "file_request"}


async def test_the_agent_asking_for_a_file_after_its_runs_deadline_is_refused(
    fleet: Fleet, pool: asyncpg.Pool, nats_url: str, tmp_path: Path
) -> None:
    fleet.executor(FILES)
    fleet.agent("dev-a")
    await fleet.wait_online(["dev-a"])
    file_id = await upload(fleet.api, b"listen 8080\n")
    now = datetime.now(UTC)
    runs = {  # when each run started, and its deadline
        "current": (now, now + timedelta(minutes=10)),
        "expired": (now - timedelta(hours=1), now - timedelta(minutes=1)),
    }
    reports = {}
    async with job_sender(nats_url, "dev-a") as sender:
        for name, (started_at, deadline) in runs.items():
            destination = tmp_path / f"{name}.conf"
            task_id, execution_id = await file_run(
                pool,
                ["dev-a"],
                file_id,
                destination=str(destination),
                started_at=started_at,
                deadline=deadline,
            )
            spec = RunSpec(
                task_id=task_id,
                name="ship a file",
                task_type=FILES,
                task_payload=deployment(file_id, destination),
                device_ids=["dev-a"],
                group_ids=[],
            )
            # The job as its executor sent it; the agent (restarted, or sent it again) runs it
            # only now.
            job = job_for(spec, job_id(execution_id, "dev-a"), execution_id)
            await sender.send(job)
            reports[name] = await sender.finished(job.job_id)

    assert reports["current"].status == "success", reports["current"]
    assert (tmp_path / "current.conf").read_bytes() == b"listen 8080\n"
    assert (reports["expired"].status, reports["expired"].error) == (
        "failed",
        f"file {file_id!r} is not available to this device",
    )
    assert not (tmp_path / "expired.conf").exists()

    async def listed() -> bool:
        return await refusals(fleet.api, "dev-a") == {EXPIRED: 1}

    await wait_until(listed, 15, "the expired grant's refusal to be listed", fleet.watched)


async def test_a_flooding_device_is_held_to_its_rate_while_another_device_is_served(
    fleet: Fleet, pool: asyncpg.Pool, nats_url: str, tmp_path: Path
) -> None:
    fleet.services.env["DEPLOYX_FILE_REQUESTS_PER_SECOND"] = str(RATE)
    fleet.services.env["DEPLOYX_FILE_REQUESTS_BURST"] = str(BURST)
    executor = fleet.executor(FILES)
    fleet.agent("good-1")
    await executor.wait_for_log("executor_started")  # its file server listens before that
    await fleet.wait_online(["good-1"])
    content = os.urandom(300 * 1024)  # three chunks
    file_id = await upload(fleet.api, content)
    # The flooding device asks, over and over, for the file of a job of its own.
    deadline = datetime.now(UTC) + timedelta(minutes=10)
    _, flood_run = await file_run(pool, ["flood-1"], file_id, deadline=deadline)
    asked = ChunkRequest(job_id=job_id(flood_run, "flood-1"), file_id=file_id)
    request = msgspec.json.encode(asked)
    flooder = await agent_connection(nats_url, "flood-1")
    answers: Counter[str] = Counter()

    async def on_answer(msg: nats.aio.msg.Msg) -> None:
        answers[(msg.headers or {}).get(STATUS, "")] += 1

    inbox = flooder.new_inbox()
    await flooder.subscribe(inbox, cb=on_answer)
    sent, stop = 0, asyncio.Event()

    async def flood() -> None:
        nonlocal sent
        while not stop.is_set():
            for _ in range(25):
                await flooder.publish(files_subject("flood-1"), request, reply=inbox)
            sent += 25
            await flooder.flush()
            await asyncio.sleep(0.02)

    async def answered(count: int) -> bool:
        return answers.total() >= count

    began = time.monotonic()
    flooding = asyncio.create_task(flood())
    try:
        await wait_until(lambda: answered(2 * BURST), 15, "the flood to be answered", fleet.watched)
        destination = tmp_path / "good.bin"
        task_id, execution_id = await run_now(
            fleet.api,
            {
                "name": "ship it while flooded",
                "task_type": FILES,
                "recurrence_type": "daily",
                "recurrence_config": {"time": "03:00"},
                "device_ids": ["good-1"],
                "task_payload": deployment(file_id, destination),
            },
        )
        execution = await fleet.finished(task_id, execution_id, timeout=30)
    finally:
        stop.set()
        await flooding
    elapsed = time.monotonic() - began

    async def all_counted() -> bool:
        """Every request of the flood answered with its chunk, or listed as over the rate."""
        surplus = (await refusals(fleet.api, "flood-1")).get(TOO_MANY, 0)
        return answers["ok"] + surplus == sent

    await wait_until(all_counted, 15, "every flood request counted", fleet.watched)
    await flooder.close()

    assert execution["status"] == "success", execution
    assert destination.read_bytes() == content
    # The burst, then the rate, and no more: the rest was listed, and the flood told to ask
    # again later at most every TOLD_EVERY.
    assert BURST <= answers["ok"] <= BURST + RATE * elapsed, (answers, elapsed)
    assert 1 <= answers["unavailable"] <= elapsed / TOLD_EVERY + 1, (answers, elapsed)
    assert await refusals(fleet.api, "flood-1") == {TOO_MANY: sent - answers["ok"]}
    assert await refusals(fleet.api, "good-1") == {}


async def test_a_device_flooding_file_requests_at_full_speed_holds_up_no_other_work_of_the_executor(
    fleet: Fleet, pool: asyncpg.Pool, nats_url: str
) -> None:
    executor = fleet.executor(FILES)
    await executor.wait_for_log("executor_started")
    file_id = await upload(fleet.api, b"listen 8080\n")
    deadline = datetime.now(UTC) + timedelta(minutes=10)
    _, flood_run = await file_run(pool, ["flood-1"], file_id, deadline=deadline)
    asked = ChunkRequest(job_id=job_id(flood_run, "flood-1"), file_id=file_id)
    flooder = await flooding(nats_url, "flood-1", "files", msgspec.json.encode(asked))
    try:

        async def flooded() -> bool:
            return (await refusals(fleet.api, "flood-1")).get(TOO_MANY, 0) > 0

        # The flood reached the file server, which counts its surplus for the admins ...
        await wait_until(flooded, 10, "the flood's surplus to be listed", fleet.watched)
        # ... while the executor (whose file server that is) starts and ends another run.
        task_id, execution_id = await run_now(
            fleet.api,
            {
                "name": "ship it while flooded at full speed",
                "task_type": FILES,
                "recurrence_type": "daily",
                "recurrence_config": {"time": "03:00"},
                "device_ids": ["never-seen-1"],
                "task_payload": deployment(file_id, Path("/tmp/never-written.conf")),
            },
        )
        execution = await fleet.finished(task_id, execution_id, timeout=10)
    finally:
        flooder.kill()
        await flooder.wait()

    details = execution["result"]["execution_details"]
    assert details["never-seen-1"]["status"] == "unreachable", execution
