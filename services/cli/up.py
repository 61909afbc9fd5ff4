"""`deployx up`: embedded Postgres and NATS (unless given), the schema, and every service."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import msgspec
import structlog
from msgspec.structs import replace

from services.api.server import api_url
from services.cli import runtime
from services.cli.demo_agents import agent_argv, agent_environment, agent_user, demo_agent
from services.cli.lifecycle import Service
from services.cli.ready_banner import announce_when_ready
from services.cli.trust_services import serve_sealer, serve_webhooks
from services.domain.kinds import TASK_TYPES
from services.infra.auth import create_token, hash_token
from services.infra.db import ensure_database, migrate
from services.infra.embedded_nats import EmbeddedNats
from services.infra.embedded_postgres import EmbeddedPostgres
from services.infra.nats_auth import creds_path, login_url, write_auth_files
from services.infra.secret_files import write_secret
from services.infra.settings import Settings

log = structlog.get_logger("deployx.up")
AGENTS_DIR = "agents"  # the demo agents' working directories, one per agent
SERVICES: list[Service] = [
    runtime.serve_projector,
    runtime.serve_relay,
    runtime.serve_ticker,
    runtime.serve_api,
    *(runtime.executor_service(task_type) for task_type in TASK_TYPES),
    serve_webhooks,
    serve_sealer,
]


class Servers(msgspec.Struct, frozen=True):
    """Where the services and the demo agents find the servers."""

    settings: Settings  # with the embedded servers' URLs and the services' logins
    agents_nats_url: str  # the same server, without the services' login
    agents_creds: Path | None  # agents/<id>.json logins for an embedded NATS


def _local_agents(
    settings: Settings, servers: Servers, data_dir: Path, count: int
) -> list[Service]:
    """Demo agents local-1 ... local-N on this machine, each a process with its own login, job
    journal and working directory; under root they run (and so run their jobs) as an
    unprivileged user, who cannot read the secrets in the data directory."""
    user = agent_user()
    env = agent_environment(settings, servers.agents_nats_url)
    agents_dir = _private(data_dir / AGENTS_DIR, shared=user is not None)
    services = []
    for number in range(1, count + 1):
        device = f"local-{number}"
        state_dir = _private(agents_dir / device, shared=False)
        creds = creds_path(servers.agents_creds, device) if servers.agents_creds else None
        argv = agent_argv(device, state_dir, creds, user)
        services.append(demo_agent(argv, env, state_dir, device))
    log.info("demo_agents", count=count, user=user or "ourselves")
    return services


def up(settings: Settings, data_dir: Path, agents: int) -> None:
    data_dir = data_dir.expanduser().absolute()
    # Under root the demo agents' own user must pass through it to their directories.
    _private(data_dir, shared=agent_user() is not None)
    devices = [f"local-{number}" for number in range(1, agents + 1)]
    with _embedded_servers(settings, data_dir, devices) as servers:
        settings = servers.settings
        token = asyncio.run(_prepare(settings, data_dir))
        write_env_file(data_dir, settings)
        banner = (
            f"\nDeployX is up.\n  console and API: {api_url(settings)}\n"
            f"  admin token:     {token}\n  data directory:  {data_dir}\n"
            "Press Ctrl-C to stop everything.\n"
        )
        demo = _local_agents(settings, servers, data_dir, agents)
        ready = announce_when_ready(devices, banner)
        runtime.run_with_probes(settings, [*SERVICES, *demo, ready])
    print("DeployX stopped.", flush=True)


def _private(path: Path, *, shared: bool) -> Path:
    """A directory only we may list; `shared`: others may pass through it (not list it)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o711 if shared else 0o700)
    return path


ENV_FILE = "deployx.env"


def write_env_file(data_dir: Path, settings: Settings) -> None:
    """Where the embedded servers listen, with their logins, for `deployx events`, `replay`
    and `token` meanwhile: readable by its owner only."""
    write_secret(
        data_dir / ENV_FILE,
        f"DEPLOYX_DATABASE_URL={settings.database_url}\nDEPLOYX_NATS_URL={settings.nats_url}\n",
    )


def read_env_file(data_dir: Path) -> dict[str, str]:
    path = data_dir / ENV_FILE
    if not path.is_file():
        return {}
    pairs = (line.partition("=") for line in path.read_text().splitlines() if "=" in line)
    return {name.strip(): value.strip() for name, _, value in pairs}


def _secret(path: Path) -> str:
    """A generated password kept in path (mode 0600) and reused on the next start."""
    if path.is_file():
        return path.read_text().strip()
    value = secrets.token_urlsafe(24)
    write_secret(path, value + "\n")
    return value


@contextlib.contextmanager
def _embedded_servers(settings: Settings, data_dir: Path, devices: list[str]) -> Iterator[Servers]:
    """Starts the servers the environment does not name, and stops them last.

    The embedded PostgreSQL wants a generated password (scram-sha-256); the embedded
    nats-server knows only the services' user and one per demo agent, fenced to its own
    subjects exactly as `deployx nats-auth` fences a production agent.
    """
    agents_url, creds = settings.nats_url, None
    with contextlib.ExitStack() as stack:
        if "DEPLOYX_DATABASE_URL" not in os.environ:
            password = _secret(data_dir / "postgres-password")
            postgres = stack.enter_context(
                EmbeddedPostgres(data_dir / "postgres", password=password)
            )
            settings = replace(settings, database_url=f"{postgres.dsn.rsplit('/', 1)[0]}/deployx")
            log.info("postgres_started", port=postgres.port)
        if "DEPLOYX_NATS_URL" not in os.environ:
            creds = data_dir / "nats-auth"
            service = write_auth_files(creds, devices)
            conf = ["-c", str(creds / "auth.conf")]
            server = stack.enter_context(EmbeddedNats(data_dir / "nats", extra_args=conf))
            settings = replace(settings, nats_url=login_url(server.url, service))
            agents_url = server.url
            log.info("nats_started", url=server.url)
        yield Servers(settings=settings, agents_nats_url=agents_url, agents_creds=creds)


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
    write_secret(token_file, token + "\n")
    return token
