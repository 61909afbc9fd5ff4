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


async def test_an_executor_stopped_mid_run_finishes_it_before_exiting(
    fleet: Fleet, tmp_path: Path
) -> None:
    executor = fleet.executor()
    fleet.agent("dev-a")
    await fleet.wait_online(["dev-a"])
    await executor.wait_for_log("executor_started")

    task_id, execution_id = await run_now(fleet.api, command_task("sleep 2; echo done", ["dev-a"]))
    await executor.wait_for_log("jobs_dispatched", timeout=10)
    await stop_gracefully(executor, 35.0)

    execution = await fleet.finished(task_id, execution_id, timeout=10)
    assert execution["status"] == "success"
    assert execution["result"]["execution_details"]["dev-a"]["stdout"] == "done\n"
