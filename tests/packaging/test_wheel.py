"""The built wheel as users install it, in fresh venvs and run from outside the checkout:
`deployx up` from `[server,embedded]`, and the bare package as an agent that runs jobs."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from services.cli.up import read_env_file
from services.infra.embedded import free_port
from tests.e2e.fleet import command_task, run_now
from tests.packaging.venvs import DISTRIBUTION, REPO, Venv, build_wheel, clean_env, run
from tests.stack import Client

SERVER_HINT = f"pip install '{DISTRIBUTION}[server]'"


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    """Our own directory, others may pass through it: under root the embedded PostgreSQL and
    the demo agents run as other users, from the venv inside it."""
    made = Path(tempfile.mkdtemp(prefix="deployx-wheel-"))
    made.chmod(0o755)
    (made / "elsewhere").mkdir(mode=0o755)  # every command's working directory
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


@pytest.fixture(scope="module")
def wheel(base: Path) -> Path:
    return build_wheel(base / "dist")


@pytest.fixture(scope="module")
def full(base: Path, wheel: Path) -> Venv:
    venv = Venv(base / "full")
    venv.install(f"{wheel}[server,embedded]")
    return venv


@pytest.fixture(scope="module")
def bare(base: Path, wheel: Path) -> Venv:
    venv = Venv(base / "bare")
    venv.install(str(wheel))
    return venv


def extra_distributions(*extras: str) -> set[str]:
    table = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {
        canonicalize_name(Requirement(requirement).name)
        for extra in extras
        for requirement in table["optional-dependencies"][extra]
    }


def test_the_wheel_ships_the_console_and_the_schema_and_no_tests(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert archive.read("services/infra/schema.sql") == (REPO / "schema.sql").read_bytes()
        for path in (REPO / "migrations").iterdir():  # the steps after the base, and their README
            shipped = f"services/infra/migrations/{path.name}"
            assert archive.read(shipped) == path.read_bytes(), shipped
        web = [path for path in (REPO / "web").rglob("*") if path.is_file()]
        for path in web:
            shipped = f"services/api/web/{path.relative_to(REPO / 'web')}"
            assert archive.read(shipped) == path.read_bytes(), shipped
    tops = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert tops == {"events", "services", "projections"}
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_the_installed_package_serves_its_own_console_and_schema(full: Venv, base: Path) -> None:
    script = (
        "import services.api.app as a, services.infra.db as d, services.infra.migrations as m; "
        "print(a.WEB_DIR, d.SCHEMA_PATH, m.STEPS_DIR)"
    )
    found = map(Path, run([full.bin("python"), "-c", script], cwd=base).stdout.split())
    web, schema, steps = found
    site = full.site_packages()
    assert (web, schema) == (site / "services/api/web", site / "services/infra/schema.sql")
    assert steps == site / "services/infra/migrations"
    assert (web / "index.html").is_file() and schema.is_file() and (steps / "README.md").is_file()


def test_the_bare_wheel_installs_only_what_the_agent_needs(bare: Venv) -> None:
    installed = {canonicalize_name(name) for name in bare.distributions()}
    assert {"deployx-scheduler", "nats-py", "msgspec", "structlog"} <= installed
    assert installed & extra_distributions("server", "embedded") == set()


def test_the_bare_agent_answers_and_a_server_command_names_the_extra(
    bare: Venv, base: Path
) -> None:
    elsewhere = base / "elsewhere"
    helped = run([bare.bin("deployx"), "agent", "--help"], cwd=elsewhere)
    assert "--device-id" in helped.stdout
    # A device's own login is written where the agent runs, too.
    auth = base / "bare-nats-auth"
    run([bare.bin("deployx"), "nats-auth", "--agents", "dev-1", "--out", str(auth)], cwd=elsewhere)
    assert (auth / "agents" / "dev-1.json").is_file()
    for command in (["migrate"], ["api"], ["projector"], ["up", "--data-dir", str(base / "no")]):
        refused = run([bare.bin("deployx"), *command], cwd=elsewhere, check=False)
        assert refused.returncode == 1, (command, refused.stderr)
        assert SERVER_HINT in refused.stderr, (command, refused.stderr)
        assert "Traceback" not in refused.stderr
    assert not (base / "no").exists()


def test_up_without_the_embedded_extra_names_it(base: Path, wheel: Path) -> None:
    server = Venv(base / "server")
    server.install(f"{wheel}[server]")
    argv = [server.bin("deployx"), "up", "--data-dir", str(base / "server-data")]
    refused = run([*argv, "--port", str(free_port())], cwd=base / "elsewhere", check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"pip install '{DISTRIBUTION}[embedded]'" in refused.stderr
    assert "Traceback" not in refused.stderr


class Process:
    """A child with its output in a log file; stopped with SIGINT, as Ctrl-C stops it."""

    def __init__(self, name: str, argv: list[str], log: Path, cwd: Path, **env: str) -> None:
        self.name, self.log = name, log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env=clean_env(DEPLOYX_LOG_FORMAT="json", **env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches pytest only
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def interrupt(self, timeout: float = 60) -> int:
        """SIGINT, then its exit code; SIGKILL if it has not exited within timeout."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        raise AssertionError(f"{self.name} did not stop on SIGINT:\n{self.output()[-3000:]}")


async def until(
    condition: Callable[[], Awaitable[bool]], timeout: float, what: str, *watched: Process
) -> None:
    """Polls condition until it holds; fails with the logs if a watched process exits first."""
    deadline = time.monotonic() + timeout
    while not await condition():
        dead = [p for p in watched if p.popen.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name} ---\n{p.output()[-3000:]}" for p in watched)
            reason = f"{dead[0].name} exited" if dead else f"{timeout} s passed"
            raise AssertionError(f"waiting for {what}: {reason}\n{logs}")
        await asyncio.sleep(0.05)


async def test_deployx_up_from_the_wheel_runs_a_task_on_its_agent_and_a_bare_one(
    full: Venv, bare: Venv, base: Path
) -> None:
    elsewhere, data_dir, port = base / "elsewhere", base / "data", free_port()
    argv = [full.bin("deployx"), "up", "--data-dir", str(data_dir), "--port", str(port)]
    up = Process("deployx up", [*argv, "--agents", "1"], base / "up.log", elsewhere)
    agent: Process | None = None
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                try:
                    async with session.get(f"{url}/readyz") as response:
                        return response.status == 200 and "admin token:" in up.output()
                except aiohttp.ClientError:
                    return False

            await until(ready, 120, "deployx up to be ready", up)
            token = re.search(r"admin token:\s+(\S+)", up.output())
            assert token is not None
            api = Client(session, url, token[1])
            for path, served in (("/", "index.html"), ("/web/app.css", "app.css")):
                async with session.get(url + path) as response:
                    assert response.status == 200, path
                    assert await response.read() == (REPO / "web" / served).read_bytes()

            # The bare package's agent joins the same NATS (with the services' login: `up`
            # made agent logins for its own demo agents only).
            nats_url = read_env_file(data_dir)["DEPLOYX_NATS_URL"]
            agent_argv = [bare.bin("deployx"), "agent", "--device-id", "bare-1"]
            agent_argv += ["--state-dir", str(base / "bare-agent")]
            agent = Process("bare agent", agent_argv, base / "agent.log", elsewhere,
                            DEPLOYX_NATS_URL=nats_url)  # fmt: skip

            async def online() -> bool:
                status, devices = await api.get("/api/devices")
                seen = (
                    {d["id"] for d in devices["items"] if d["online"]} if status == 200 else set()
                )
                return {"local-1", "bare-1"} <= seen

            await until(online, 60, "local-1 and bare-1 online", up, agent)
            task_id, execution_id = await run_now(
                api, command_task("echo from $DEPLOYX_DEVICE_ID", ["local-1", "bare-1"])
            )
            runs: list[dict[str, Any]] = []

            async def finished() -> bool:
                _, page = await api.get(f"/api/schedule/tasks/{task_id}/executions")
                runs[:] = [r for r in page["items"] if r["id"] == execution_id]
                return bool(runs) and runs[0]["status"] != "running"

            await until(finished, 60, "the run to finish", up, agent)
        execution = runs[0]
        assert execution["status"] == "success", execution
        details = execution["result"]["execution_details"]
        for device in ("local-1", "bare-1"):
            assert details[device]["stdout"] == f"from {device}\n", details
    finally:
        stopped_agent = agent.interrupt() if agent is not None else 0
        stopped_up = up.interrupt()
    assert (stopped_up, stopped_agent) == (0, 0), up.output()[-3000:]
    assert "DeployX stopped." in up.output()
