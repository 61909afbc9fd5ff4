"""The demo agents of `deployx up`: real agent processes, as an unprivileged user under root."""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import sys
from pathlib import Path

import structlog

from services.cli.lifecycle import Service
from services.infra.clock import Backoff, wait_first
from services.infra.settings import Settings

log = structlog.get_logger("deployx.up")
# Under root the demo agents become the first of these that exists: a dedicated account if
# the operator made one, else nobody. Their jobs then cannot read the data directory's secrets.
AGENT_USERS = ("deployx-agent", "nobody")
STOP_GRACE = 40.0  # an agent waits up to 30 s for its running jobs before it exits
_AGENT_MAIN = "from services.cli.main import main; main()"


def agent_user() -> str | None:
    """Who the demo agents run as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in AGENT_USERS:
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError(f"no unprivileged user for the demo agents: create {AGENT_USERS[0]}")


def agent_environment(settings: Settings, nats_url: str) -> dict[str, str]:
    """Ours without any DEPLOYX_ setting (the database URL and the services' NATS login are
    among them, and jobs inherit their agent's environment), plus what the agent needs."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("DEPLOYX_")}
    env |= {
        "DEPLOYX_NATS_URL": nats_url,  # not on the command line, which `ps` shows everyone
        "DEPLOYX_LOG_FORMAT": settings.log_format,
        "DEPLOYX_LOG_LEVEL": settings.log_level,
    }
    if settings.nats_ca:
        env["DEPLOYX_NATS_CA"] = settings.nats_ca
    return env


def agent_argv(device_id: str, state_dir: Path, creds: Path | None, user: str | None) -> list[str]:
    argv = [sys.executable, "-c", _AGENT_MAIN, "agent", "--device-id", device_id]
    argv += ["--state-dir", str(state_dir), "--label", "demo=true"]
    if creds is not None:
        argv += ["--creds", str(creds)]
    if user is not None:
        argv += ["--run-as", user]  # it reads --creds as root, then becomes user
    return argv


def demo_agent(argv: list[str], env: dict[str, str], state_dir: Path, device_id: str) -> Service:
    """A service that keeps the agent process running (restarted if it dies) until stop."""

    async def serve(_settings: Settings, stop: asyncio.Event) -> None:
        restart = Backoff(first=1.0, limit=30.0)
        while not stop.is_set():
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                env=env,
                cwd=state_dir,
                # Its own session: a terminal's Ctrl-C reaches `up`, which stops it in order.
                start_new_session=True,
            )
            exited = asyncio.ensure_future(proc.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not exited.done():
                await _stop(proc, exited)
                return
            log.warning("demo_agent_exited", device_id=device_id, code=proc.returncode)
            await wait_first(stop, timeout=restart.next())

    return serve


async def _stop(proc: asyncio.subprocess.Process, exited: asyncio.Future[int]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(exited), STOP_GRACE)
    except TimeoutError:
        proc.kill()
        await exited
