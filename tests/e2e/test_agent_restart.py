"""The real agent across a restart: a job it finished, sent again (as an executor that took
over a run resends it), is answered from its journal with the first result, and never run again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from services.agent.protocol import Job
from tests.e2e.job_sender import JobSender, job_sender
from tests.e2e.processes import Services

pytestmark = pytest.mark.e2e

DEVICE = "dev-journal"


@pytest.fixture
async def executor(nats_url: str) -> AsyncIterator[JobSender]:
    """Sends jobs to the device and hears its reports, as an executor does over NATS."""
    async with job_sender(nats_url, DEVICE) as sender:
        yield sender


def command_job(job_id: str, command: str) -> Job:
    return Job(
        job_id=job_id,
        execution_id=job_id.split(":")[0],
        task_id="journal-task",
        task_type="command",
        payload=msgspec.Raw(msgspec.json.encode({"command": command})),
        timeout_seconds=30,
    )


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
async def test_a_finished_job_sent_again_after_a_restart_is_answered_not_run(
    services: Services, executor: JobSender, tmp_path: Path, stop: str
) -> None:
    state, runs = tmp_path / "state", tmp_path / "runs"
    agent = services.start("agent", ["agent", "--device-id", DEVICE, "--state-dir", str(state)])
    await agent.wait_for_log("agent_ready")
    # Its output differs on every run: an answer with the first output was not run again.
    job = command_job(f"exec-1:{DEVICE}", f"echo run >> {runs}; date +%s.%N")

    await executor.send(job)
    first = await executor.finished(job.job_id)
    assert (first.status, first.exit_code) == ("success", 0), first
    if stop == "sigterm":
        assert agent.terminate() == 0
    else:
        agent.kill9()
    agent.start()
    await agent.wait_for_log("agent_ready")
    await executor.send(job)
    again = await executor.finished(job.job_id)

    assert again == first
    assert runs.read_text() == "run\n"
    # A new job still runs: the journal refuses only what it has seen.
    await executor.send(command_job(f"exec-2:{DEVICE}", f"echo run >> {runs}"))
    assert (await executor.finished(f"exec-2:{DEVICE}")).status == "success"
    assert runs.read_text() == "run\nrun\n"
    assert services.errors() == [], services.tails()
