"""`deployx agent` imports nothing of the server: a device needs only the bare package."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e.processes import deployx_command
from tests.packaging.importtime import Import, imports, server_imports


def test_agent_help_imports_no_server_module() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *deployx_command(), "agent", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--device-id" in done.stdout
    found = imports(done.stderr)
    assert "services.cli.main" in {i.module for i in found}  # importtime did report them
    assert_no_server_imports(found)


async def test_a_running_agent_imports_no_server_module(nats_server: str, tmp_path: Path) -> None:
    """The agent connected and taking jobs, then stopped: still nothing of the server."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("DEPLOYX_")}
    env["DEPLOYX_LOG_FORMAT"] = "json"
    argv = ["agent", "--device-id", "imports-probe", "--nats", nats_server]
    argv += ["--state-dir", str(tmp_path / "state")]
    importtime = tmp_path / "importtime.txt"
    with importtime.open("w") as stderr:
        agent = await asyncio.create_subprocess_exec(
            sys.executable,
            "-X",
            "importtime",
            *deployx_command(),
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
    assert agent.stdout is not None
    try:
        async with asyncio.timeout(30):
            while b'"agent_ready"' not in (line := await agent.stdout.readline()):
                assert line, f"the agent exited before it was ready: {agent.returncode}"
    finally:
        if agent.returncode is None:
            agent.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            await agent.communicate()
    assert agent.returncode == 0
    found = imports(importtime.read_text())
    assert "services.agent.main" in {i.module for i in found}
    assert_no_server_imports(found)


def assert_no_server_imports(found: list[Import]) -> None:
    server = server_imports(found)
    chains = "\n".join(i.chain for i in server[:5])
    assert not server, f"{len(server)} imports of the server's modules, the first:\n{chains}"
