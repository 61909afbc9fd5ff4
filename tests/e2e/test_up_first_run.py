"""`deployx up` says it is up only once a run can reach its demo agents: a new user's first
task, started right after the banner, succeeds on local-1 (issue 11)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import aiohttp
import pytest

from services.infra.embedded import free_port
from tests.e2e.fleet import TASKS, command_task, run_now
from tests.e2e.processes import ServiceProcess, wait_until
from tests.stack import Client

pytestmark = pytest.mark.e2e
BANNER = "DeployX is up."


async def test_the_first_run_right_after_the_banner_reaches_local_1() -> None:
    base = Path(tempfile.mkdtemp(prefix="deployx-first-"))
    os.chmod(base, 0o755)  # under root the demo agents run as another user
    data_dir, logs = base / "data", base / "logs"
    os.mkdir(logs)
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("DEPLOYX_")}
    env["DEPLOYX_LOG_FORMAT"] = "json"
    command = ["up", "--data-dir", str(data_dir), "--port", str(port), "--agents", "1"]
    process = ServiceProcess("up", command, logs, env).start()
    try:

        async def banner_printed() -> bool:
            return process.log_path.exists() and BANNER in process.log_path.read_text()

        await wait_until(banner_printed, 120, "the banner", [process])
        async with aiohttp.ClientSession() as session:
            token = (data_dir / "admin-token").read_text().strip()
            api = Client(session, f"http://127.0.0.1:{port}", token)
            task_id, execution_id = await run_now(api, command_task("echo first", ["local-1"]))
            found: dict[str, object] = {}

            async def done() -> bool:
                _, page = await api.get(f"{TASKS}/{task_id}/executions")
                run = next(item for item in page["items"] if item["id"] == execution_id)
                found.update(run)
                return bool(run["status"] != "running")

            await wait_until(done, 60, "the first run", [process])
        assert found["status"] == "success", found
    finally:
        process.terminate(timeout=60)
        shutil.rmtree(base, ignore_errors=True)
