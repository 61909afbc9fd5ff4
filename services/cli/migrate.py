"""`deployx migrate [--check] [--contract]`: what the operator and CI see of the migrations."""

from __future__ import annotations

import asyncpg

from services.infra import migrations
from services.infra.db import ensure_database


async def migrate(database_url: str, *, contract: bool, lock_timeout: float) -> None:
    await ensure_database(database_url)
    try:
        done = await migrations.migrate(database_url, contract=contract, lock_timeout=lock_timeout)
    except migrations.MigrationError as exc:
        raise SystemExit(f"deployx migrate: {exc}") from None
    for name in done:
        print(f"applied {name}")
    if not done:
        print("the schema is up to date")
    waiting = [] if contract else await _contract_pending(database_url)
    if waiting:
        print(f"contract steps wait for `deployx migrate --contract`: {', '.join(waiting)}")


async def _contract_pending(database_url: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        found = await migrations.status(conn, migrations.base_step(), migrations.load_steps())
    finally:
        await conn.close()
    return [f"{step.number:04d}_{step.name}" for step in found.contract_pending]


async def check(
    database_url: str,
    *,
    contract: bool,
    steps: list[migrations.Step] | None = None,
    base: migrations.Step | None = None,
) -> int:
    """Changes nothing: 0 if up to date, 1 if migrate would apply something, 2 if it cannot
    (applied steps edited since, or a database newer than this version)."""
    try:
        conn = await asyncpg.connect(database_url)
    except asyncpg.InvalidCatalogNameError:
        print("the database does not exist yet: migrate creates it and applies everything")
        return 1
    try:
        found = await migrations.status(
            conn,
            base or migrations.base_step(),
            migrations.load_steps() if steps is None else steps,
        )
    finally:
        await conn.close()
    if found.changed:
        print(f"applied steps were edited since they ran: {', '.join(found.changed)}")
    if found.unknown:
        print(f"the database has steps this version does not know: {found.unknown}")
    if found.changed or found.unknown:
        return 2
    pending = [f"{s.number:04d}_{s.name}" for s in found.pending]
    waiting = [f"{s.number:04d}_{s.name}" for s in found.contract_pending]
    if found.base_pending:
        print("pending: the base (schema.sql is new or changed)")
    if pending:
        print(f"pending: {', '.join(pending)}")
    if waiting:
        print(f"contract steps pending: {', '.join(waiting)}")
    if found.up_to_date and not (contract and waiting):
        print("the schema is up to date")
        return 0
    return 1
