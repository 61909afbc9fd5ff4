"""`deployx up`: embedded Postgres and NATS (unless given), the schema, and every service."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import structlog
from msgspec.structs import replace

from events.base import TASK_TYPES
from services import runtime
from services.agent.main import AgentConfig
from services.api.server import api_url
from services.auth import create_token, hash_token
from services.db import ensure_database, migrate
from services.embedded_nats import EmbeddedNats
from services.embedded_postgres import EmbeddedPostgres
from services.settings import Settings

log = structlog.get_logger("deployx.up")
SERVICES: list[runtime.Service] = [
    runtime.serve_projector,
    runtime.serve_relay,
    runtime.serve_ticker,
    runtime.serve_api,
    *(runtime.executor_service(task_type) for task_type in TASK_TYPES),
]


def _local_agents(settings: Settings, data_dir: Path, count: int) -> list[runtime.Service]:
    """Demo agents local-1 ... local-N on this machine, each with its own job journal."""
    return [
        runtime.agent_service(
            AgentConfig(
                device_id=f"local-{number}",
                nats_url=settings.nats_url,
                state_dir=data_dir / "agents" / f"local-{number}",
                labels={"demo": "true"},
            )
        )
        for number in range(1, count + 1)
    ]


def up(settings: Settings, data_dir: Path, agents: int) -> None:
    data_dir = data_dir.expanduser().absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _embedded_servers(settings, data_dir) as settings:
        token = asyncio.run(_prepare(settings, data_dir))
        write_env_file(data_dir, settings)
        print(
            f"\nDeployX is up.\n  console and API: {api_url(settings)}\n"
            f"  admin token:     {token}\n  data directory:  {data_dir}\n"
            "Press Ctrl-C to stop everything.\n",
            flush=True,
        )
        runtime.run_until_signal(settings, [*SERVICES, *_local_agents(settings, data_dir, agents)])
    print("DeployX stopped.", flush=True)


ENV_FILE = "deployx.env"


def write_env_file(data_dir: Path, settings: Settings) -> None:
    """Where the embedded servers listen, for `deployx events`, `replay` and `token` meanwhile."""
    (data_dir / ENV_FILE).write_text(
        f"DEPLOYX_DATABASE_URL={settings.database_url}\nDEPLOYX_NATS_URL={settings.nats_url}\n"
    )


def read_env_file(data_dir: Path) -> dict[str, str]:
    path = data_dir / ENV_FILE
    if not path.is_file():
        return {}
    pairs = (line.partition("=") for line in path.read_text().splitlines() if "=" in line)
    return {name.strip(): value.strip() for name, _, value in pairs}


@contextlib.contextmanager
def _embedded_servers(settings: Settings, data_dir: Path) -> Iterator[Settings]:
    """Starts the servers the environment does not name, and stops them last."""
    with contextlib.ExitStack() as stack:
        if "DEPLOYX_DATABASE_URL" not in os.environ:
            postgres = stack.enter_context(EmbeddedPostgres(data_dir / "postgres"))
            settings = replace(settings, database_url=f"{postgres.dsn.rsplit('/', 1)[0]}/deployx")
            log.info("postgres_started", port=postgres.port)
        if "DEPLOYX_NATS_URL" not in os.environ:
            server = stack.enter_context(EmbeddedNats(data_dir / "nats"))
            settings = replace(settings, nats_url=server.url)
            log.info("nats_started", url=server.url)
        yield settings


async def _prepare(settings: Settings, data_dir: Path) -> str:
    """Schema applied; an admin token, kept in the data directory so restarts reuse it."""
    await ensure_database(settings.database_url)
    await migrate(settings.database_url)
    token_file = data_dir / "admin-token"
    conn = await asyncpg.connect(settings.database_url)
    try:
        if token_file.is_file():
            token = token_file.read_text().strip()
            known = await conn.fetchval(
                "SELECT 1 FROM api_tokens WHERE token_hash = $1", hash_token(token)
            )
            if known:
                return token
        token = await create_token(conn, "admin", "admin")
    finally:
        await conn.close()
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return token
