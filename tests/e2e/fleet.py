"""A small fleet for end-to-end runs: the API in-process, real executors and real agents."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.e2e.processes import ServiceProcess, Services, wait_until
from tests.stack import Client

TASKS = "/api/schedule/tasks"


def command_task(command: str, device_ids: list[str], **payload: Any) -> dict[str, Any]:
    return {
        "name": "run it",
        "task_type": "command",
        "recurrence_type": "daily",
        "recurrence_config": {"time": "03:00"},
        "device_ids": device_ids,
        "task_payload": {"command_payload": {"command": command, **payload}},
    }


async def run_now(api: Client, body: dict[str, Any]) -> tuple[str, str]:
    """Creates the task and runs it now: (task id, execution id)."""
    status, task = await api.post(TASKS, body)
    assert status == 201, task
    status, accepted = await api.post(f"{TASKS}/{task['id']}/execute")
    assert status == 202, accepted
    return task["id"], accepted["execution_id"]


class Fleet:
    """Executors and agents as child processes, beside the test's in-process API."""

    def __init__(self, services: Services, api: Client, state_dir: Path) -> None:
        self.services, self.api, self.state_dir = services, api, state_dir
        self.agents: dict[str, ServiceProcess] = {}

    def executor(self, task_type: str = "command", name: str | None = None) -> ServiceProcess:
        return self.services.start(
            name or f"executor-{task_type}", ["executor", "--type", task_type]
        )

    def agent(self, device_id: str, *extra: str) -> ServiceProcess:
        """Starts (or restarts) the real agent program for device_id."""
        args = ["agent", "--device-id", device_id, "--state-dir", str(self.state_dir / device_id)]
        existing = self.agents.get(device_id)
        if existing is not None:
            existing.start()
            return existing
        self.agents[device_id] = self.services.start(f"agent-{device_id}", [*args, *extra])
        return self.agents[device_id]

    async def wait_online(self, device_ids: Sequence[str]) -> None:
        async def online() -> bool:
            _, devices = await self.api.get("/api/devices")
            seen = {device["id"] for device in devices["items"] if device["online"]}
            return set(device_ids) <= seen

        await wait_until(online, 30, f"devices {', '.join(device_ids)} online", self.watched)

    async def finished(
        self, task_id: str, execution_id: str, timeout: float = 60
    ) -> dict[str, Any]:
        """The execution once it is no longer running, and its task no longer shows it running.

        Each read table follows the log on its own checkpoint, so the executions table may show
        the end of a run a moment before the tasks table counts it.
        """
        found: dict[str, Any] = {}

        async def done() -> bool:
            _, page = await self.api.get(f"/api/schedule/tasks/{task_id}/executions")
            for item in page["items"]:
                if item["id"] == execution_id and item["status"] != "running":
                    found.update(item)
            status, task = await self.api.get(f"/api/schedule/tasks/{task_id}")
            return bool(found) and (status == 404 or task["status"] != "running")

        await wait_until(done, timeout, f"execution {execution_id} to finish", self.watched)
        return found

    @property
    def watched(self) -> list[ServiceProcess]:
        return [service for service in self.services.all if service.running]
