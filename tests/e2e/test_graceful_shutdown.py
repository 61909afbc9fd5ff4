"""SIGTERM: every service stops taking work, finishes or hands back what it holds, and exits."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.infra.embedded import free_port
from tests.e2e.fleet import Fleet, command_task, run_now
from tests.e2e.processes import ServiceProcess, Services

# What each service logs once it is running, and how long it may take to exit when idle.
SERVICES = {
    "api": (["api", "--port", "{port}"], "api_listening"),
    "projector": (["projector"], "projector_started"),
    "ticker": (["ticker"], "ticker_started"),
    "relay": (["relay"], "relay_leading"),
    "executor": (["executor", "--type", "command"], "executor_started"),
    "agent": (["agent", "--device-id", "dev-x", "--state-dir", "{state}"], "agent_ready"),
}
IDLE_EXIT_SECONDS = 10.0


async def stop_gracefully(service: ServiceProcess, within: float) -> float:
    """Sends SIGTERM; returns how long the exit took, failing if it was not clean and in time."""
    started = time.monotonic()
    code = service.terminate(timeout=within)  # SIGTERM, then SIGKILL after `within`
    elapsed = time.monotonic() - started
    assert code == 0, service.log_tail()
    assert elapsed < within, f"{service.name} took {elapsed:.1f} s"
    assert service.logged("stopped"), service.log_tail()
    return elapsed


@pytest.mark.parametrize("name", list(SERVICES))
async def test_an_idle_service_exits_cleanly_on_sigterm(
    name: str, database_url: str, nats_url: str, tmp_path: Path
) -> None:
    services = Services(tmp_path, database_url, nats_url)
    args, ready = SERVICES[name]
    command = [arg.format(port=free_port(), state=tmp_path / "agent") for arg in args]
    service = services.start(name, command)
    try:
        await service.wait_for_log(ready)
        await stop_gracefully(service, IDLE_EXIT_SECONDS)
    finally:
        services.stop_all()


async def test_an_executor_stopped_mid_run_hands_it_to_another_at_once(
    fleet: Fleet, tmp_path: Path
) -> None:
    """SIGTERM mid-run: the executor exits promptly and hands the TaskDue back (nak, no delay),
    so the other replica resumes the run now, not after the consumer's 60 s ack wait."""
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    first = fleet.executor(name="executor-first")
    fleet.agent("dev-a")
    await fleet.wait_online(["dev-a"])
    await first.wait_for_log("executor_started")

    # The job runs until the test opens the gate (at most 60 s): still running at the SIGTERM.
    command = (
        f"echo run >> {runs}; i=0; "
        f"while [ ! -e {gate} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; echo done"
    )
    task_id, execution_id = await run_now(fleet.api, command_task(command, ["dev-a"]))
    await first.wait_for_log("jobs_dispatched", timeout=10)
    # Started once the first holds the TaskDue: only a hand-back can bring it here.
    second = fleet.executor(name="executor-second")
    await second.wait_for_log("executor_started")
    await stop_gracefully(first, IDLE_EXIT_SECONDS)
    handed = [line for line in first.log_lines() if line.get("event") == "runs_handed_back"]
    assert [(line["runs"], line["stuck"]) for line in handed] == [(1, 0)], first.log_tail()
    gate.touch()

    # The ack wait is 60 s: within 30 s, only the hand-back can have brought the run back.
    execution = await fleet.finished(task_id, execution_id, timeout=30)
    assert execution["status"] == "success"
    assert execution["result"]["execution_details"]["dev-a"]["stdout"] == "done\n"
    resumed = [line for line in second.log_lines() if line.get("event") == "execution_resumed"]
    assert [line["delivery"] for line in resumed] == [2], second.log_tail()
    assert runs.read_text() == "run\n"  # the agent ran the job once, and answered the resume
