"""Fixtures of the API tests: one stack per module for tests that keep to their own users."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from services.infra.db import create_pool
from tests.conftest import with_database
from tests.e2e.api import fresh_user
from tests.e2e.fleet import Fleet
from tests.e2e.processes import Services
from tests.stack import Client, Stack, running_stack

REPO_ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture(scope="module")
async def shared_stack(
    postgres_server: str, database_template: str, nats_server: str
) -> AsyncIterator[Stack]:
    """The API and a projector on one fresh database for a whole module.

    Starting a stack costs about half a second, so modules whose tests never count anything
    global (each test acts as users of its own, see `fresh_user`) share one.
    """
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {database_template}")
    finally:
        await admin.close()
    try:
        async with running_stack(with_database(postgres_server, name), nats_server) as running:
            yield running
    finally:
        admin = await asyncpg.connect(postgres_server)
        try:
            await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        finally:
            await admin.close()


@pytest.fixture
async def operator(shared_stack: Stack) -> Client:
    """An operator of its own: whatever it lists or counts is only this test's doing."""
    return await fresh_user(shared_stack, "operator")


@pytest.fixture
async def fleet(
    stack: Stack, database_url: str, nats_url: str, tmp_path: Path
) -> AsyncIterator[Fleet]:
    """A relay beside the test's API and projector; the test starts executors and agents.

    Every service's log must be free of errors at the end.
    """
    (tmp_path / "logs").mkdir()
    services = Services(tmp_path / "logs", database_url, nats_url)
    services.env["DEPLOYX_FAKE_PKG_ROOT"] = str(tmp_path / "packages")
    # So that an agent can load the test's own package driver (tests.e2e.fake_driver).
    services.env["PYTHONPATH"] = REPO_ROOT
    services.start("relay", "relay")
    try:
        yield Fleet(services, await stack.client("ops", "admin"), tmp_path / "agents")
    finally:
        services.stop_all()
    assert services.errors() == [], services.tails()


@pytest.fixture
def services(tmp_path: Path, database_url: str, nats_url: str) -> Iterator[Services]:
    """`deployx` services started by the test as child processes, all stopped at the end."""
    running = Services(tmp_path, database_url, nats_url)
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(database_url, max_size=10)
    try:
        yield created
    finally:
        await created.close()
