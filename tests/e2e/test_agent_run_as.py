"""`deployx agent --run-as USER`: started as root, the real agent runs its jobs as USER in its
state directory, and handing that directory over gives USER nothing a job planted there."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from services.agent.protocol import Job, JobReport
from tests.e2e.job_sender import job_sender
from tests.e2e.processes import ServiceProcess, Services, wait_until

USER = "nobody"


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory other users may pass through, as a data directory's parents are."""
    made = Path(tempfile.mkdtemp(prefix="deployx-run-as-"))
    made.chmod(0o755)
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


async def exited(process: ServiceProcess) -> bool:
    return not process.running


async def run_job(nats_url: str, device_id: str, command: str) -> JobReport:
    """Sends one command job to the device, as an executor does; its finished report."""
    job = Job(
        job_id=f"run-as:{device_id}",
        execution_id="run-as",
        task_id="run-as",
        task_type="command",
        payload=msgspec.Raw(msgspec.json.encode({"command": command})),
        timeout_seconds=30,
    )
    async with job_sender(nats_url, device_id) as sender:
        await sender.send(job)
        return await sender.finished(job.job_id)


async def test_a_root_agent_runs_jobs_as_the_user_and_follows_no_planted_link(
    nats_url: str, base: Path
) -> None:
    if os.geteuid() != 0:
        # Nobody else may become another user: the agent says so and stops.
        refused = Services(base, "postgresql://unused", nats_url).start(
            "agent", ["agent", "--device-id", "run-as-1", "--run-as", USER]
        )
        await wait_until(lambda: exited(refused), 30, "the agent to refuse --run-as", [])
        assert refused.returncode not in (0, None)
        assert "only root may become another user" in refused.log_path.read_text()
        return
    state, secret = base / "state", base / "root-only"
    secret.write_text("root's secret\n")
    secret.chmod(0o600)
    state.mkdir()
    (state / "link").symlink_to(secret)  # what a job of an earlier run could have left
    (state / "journal-from-root").write_text("")  # what an earlier run as root left
    services = Services(base, "postgresql://unused", nats_url)
    agent = services.start(
        "agent", ["agent", "--device-id", "run-as-1", "--state-dir", str(state), "--run-as", USER]
    )
    try:
        await agent.wait_for_log("agent_ready")
        report = await run_job(nats_url, "run-as-1", f"id -un; pwd; cat {secret}")
    finally:
        services.stop_all()

    nobody = pwd.getpwnam(USER).pw_uid
    assert report.stdout == f"{USER}\n{state}\n"
    assert "Permission denied" in report.stderr
    assert (secret.stat().st_uid, secret.read_text()) == (0, "root's secret\n")
    assert state.stat().st_uid == nobody
    assert (state / "journal-from-root").stat().st_uid == nobody
    assert (state / "run-as-1.jobs.sqlite").stat().st_uid == nobody
    assert services.errors() == [], services.tails()
