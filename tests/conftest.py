"""Real servers for every test tier: one PostgreSQL and one nats-server per session."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import nats
import pytest

from services.infra.db import migrate
from services.infra.embedded_nats import EmbeddedNats
from services.infra.embedded_postgres import EmbeddedPostgres
from tests.ci_skips import pytest_sessionfinish, pytest_terminal_summary  # noqa: F401
from tests.stack import Stack, running_stack

SCHEMA = Path(__file__).parents[1] / "schema.sql"
TEMPLATE_DB = "deployx_template"


def with_database(dsn: str, database: str) -> str:
    """The same server's DSN for another database."""
    return f"{dsn.rsplit('/', 1)[0]}/{database}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The admin DSN of a throwaway PostgreSQL (fsync off) shared by the whole session."""
    # A directory of our own rather than pytest's: under root postgres runs as another user,
    # which must traverse it, and pytest resets its base directory to 0700 on every run.
    base = Path(tempfile.mkdtemp(prefix="deployx-test-pg-"))
    server = EmbeddedPostgres(base / "data", fsync=False)
    try:
        yield server.start()
    finally:
        server.stop()  # not kill(): the postmaster reaps its own backends
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
async def database_template(postgres_server: str) -> str:
    """A database migrated once as `deployx migrate` does it (the repo's schema.sql, then the
    steps of migrations/), cloned by `database_url`."""
    if not SCHEMA.is_file():
        raise FileNotFoundError(f"{SCHEMA} is missing: the tests need the project's schema")
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    finally:
        await admin.close()
    # It closes its connection: a template must have none while it is copied.
    await migrate(with_database(postgres_server, TEMPLATE_DB))
    return TEMPLATE_DB


@asynccontextmanager
async def fresh_database(postgres_server: str, template: str, prefix: str) -> AsyncIterator[str]:
    """The DSN of a new database copied from template, dropped on the way out."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    finally:
        await admin.close()
    yield with_database(postgres_server, name)
    admin = await asyncpg.connect(postgres_server)
    try:
        # FORCE terminates whatever connections the test left open first.
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def database_url(postgres_server: str, database_template: str) -> AsyncIterator[str]:
    """The DSN of a fresh database with the schema applied, dropped after the test."""
    async with fresh_database(postgres_server, database_template, "test") as url:
        yield url


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a nats-server with JetStream shared by the whole session."""
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
async def nats_url(nats_server: str) -> AsyncIterator[str]:
    """The session's nats-server, with every JetStream stream (and so every KV and object
    store) deleted after the test, so that each test starts from an empty JetStream."""
    yield nats_server
    nc = await nats.connect(nats_server)
    try:
        jsm = nc.jsm()
        for stream in await jsm.streams_info():
            await jsm.delete_stream(stream.config.name or "")
    finally:
        await nc.close()


@pytest.fixture
async def stack(database_url: str, nats_url: str) -> AsyncIterator[Stack]:
    """The API and a projector on a fresh database."""
    async with running_stack(database_url, nats_url) as running:
        yield running
