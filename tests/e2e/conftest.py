"""Fixtures of the API tests: one stack per module for tests that keep to their own users."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.conftest import with_database
from tests.e2e.api import fresh_user
from tests.stack import Client, Stack, running_stack


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
