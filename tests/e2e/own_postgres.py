"""A PostgreSQL of a test's own, to stop, kill or restart under the services (the session's is
shared), the services started on it as their own processes, and what must hold after.

A test module names its server in a `postgres` fixture (`with own_postgres(...) as server`)
and imports the fixtures `database_url` and `pool` that stand on it:

    from tests.e2e.own_postgres import own_database_url, own_pool  # noqa: F401 (fixtures)
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from services.infra.db import ensure_database, migrate
from services.infra.embedded import free_port
from services.infra.embedded_postgres import EmbeddedPostgres
from tests.conftest import with_database
from tests.e2e.processes import ServiceProcess, Services
from tests.e2e.test_crash_recovery import assert_stream_matches_log


@contextmanager
def own_postgres(prefix: str, *, fsync: bool) -> Iterator[EmbeddedPostgres]:
    """A running PostgreSQL on a fixed port (so that it comes back where the services look),
    removed afterwards."""
    # Not pytest's tmp_path: under root postgres runs as another user, who must traverse it.
    base = Path(tempfile.mkdtemp(prefix=prefix))
    server = EmbeddedPostgres(base / "data", port=free_port(), fsync=fsync)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(name="database_url")
async def own_database_url(postgres: EmbeddedPostgres) -> str:
    url = with_database(postgres.dsn, "deployx")
    await ensure_database(url)
    await migrate(url)
    return url


@pytest.fixture(name="pool")
async def own_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    # min_size 0: no connection the pool insists on reopening while the server is down.
    created = await asyncpg.create_pool(database_url, min_size=0, max_size=4)
    assert created is not None
    try:
        yield created
    finally:
        await created.close()


async def start_services(
    services: Services,
    api_port: int,
    *,
    executor: bool = False,
    agents: Sequence[str] = (),
    state_dir: Path | None = None,
) -> ServiceProcess:
    """The API, projector, ticker and relay as their own processes, with a command executor and
    agents (their state under state_dir) if asked; returns once each said it is ready, with
    the API's process."""
    api = services.start("api", ["api", "--host", "127.0.0.1", "--port", str(api_port)])
    started = [
        (api, "api_listening"),
        (services.start("projector", "projector"), "projector_started"),
        (services.start("ticker", "ticker"), "ticker_started"),
        (services.start("relay", "relay"), "relay_leading"),
    ]
    if executor:
        command = services.start("executor", ["executor", "--type", "command"])
        started.append((command, "executor_started"))
    for device in agents:
        assert state_dir is not None, "agents keep their journals under state_dir"
        args = ["agent", "--device-id", device, "--state-dir", str(state_dir / device)]
        started.append((services.start(f"agent-{device}", args), "agent_ready"))
    for service, event in started:
        await service.wait_for_log(event)
    return api


async def assert_came_through(pool: asyncpg.Pool, nats_url: str, services: Services) -> None:
    """Every event reached JetStream exactly once; no service exited or logged an error."""
    await assert_stream_matches_log(pool, nats_url)
    exited = [s.name for s in services.all if not s.running]
    assert not exited, f"services exited: {exited}\n{services.tails()}"
    assert not services.errors(), "\n".join(services.errors())
