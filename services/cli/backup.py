"""`deployx backup` and `deployx restore`: which database, and what to tell the operator."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from projections import PROJECTIONS
from services.infra.backup import BackupError, backup
from services.infra.backup_file import DamagedBackup, check
from services.infra.db import DATABASE_ERRORS, ensure_database, migrate
from services.infra.migrations import load_steps
from services.infra.restore import RestoreError, restore
from services.infra.secret_files import private_dir, write_secret
from services.infra.settings import Settings

REBUILT = [table for projection in PROJECTIONS for table in projection.tables]


@contextlib.contextmanager
def database_of(data_dir: Path, settings: Settings) -> Iterator[str]:
    """The database to use: DEPLOYX_DATABASE_URL's, else that of a running `deployx up` on
    data_dir, else data_dir's embedded PostgreSQL, started (and created) for this command,
    so that `deployx restore --data-dir D` and then `deployx up --data-dir D` go together."""
    from services.cli.up import ENV_FILE

    named = "DEPLOYX_DATABASE_URL" in os.environ
    if named or ((data_dir / ENV_FILE).is_file() and _answers(settings.database_url)):
        yield settings.session_url  # one long session of its own: never through a pooler
        return
    from services.infra.embedded_postgres import EmbeddedPostgres

    data_dir = private_dir(data_dir.expanduser().absolute())
    password = _password(data_dir / "postgres-password")
    with EmbeddedPostgres(data_dir / "postgres", password=password) as server:
        print(f"using the embedded PostgreSQL of {data_dir}", file=sys.stderr, flush=True)
        yield f"{server.dsn.rsplit('/', 1)[0]}/deployx"


def _answers(url: str) -> bool:
    import asyncio

    async def probe() -> None:
        conn = await asyncpg.connect(url, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except DATABASE_ERRORS:
        return False
    return True


def _password(path: Path) -> str:
    """`deployx up`'s generated password for its PostgreSQL, made here if this comes first."""
    if path.is_file():
        return path.read_text().strip()
    value = secrets.token_urlsafe(24)
    write_secret(path, value + "\n")
    return value


async def backup_command(database_url: str, out: Path) -> None:
    started = time.perf_counter()
    conn = await asyncpg.connect(database_url)
    try:
        end = await backup(conn, out, REBUILT)
    except (BackupError, OSError) as exc:
        raise SystemExit(f"deployx backup: {exc}; no backup was written") from None
    finally:
        await conn.close()
    others = ", ".join(f"{name} {n}" for name, n in end.rows.items() if name != "events")
    print(
        f"backed up {end.rows['events']} events ({others}) to {out} "
        f"in {time.perf_counter() - started:.2f} s"
    )


async def restore_command(database_url: str, path: Path) -> None:
    try:
        header, end = check(path)
    except (DamagedBackup, OSError) as exc:
        raise SystemExit(f"deployx restore: {exc}") from None
    await ensure_database(database_url)
    await migrate(database_url)
    started = time.perf_counter()
    conn = await asyncpg.connect(database_url)
    try:
        restored = await restore(conn, path, header, end, known_step=len(load_steps()))
    except RestoreError as exc:
        raise SystemExit(f"deployx restore: {exc}; nothing was restored") from None
    finally:
        await conn.close()
    loaded = ", ".join(f"{name} {n}" for name, n in restored.rows.items() if name != "events")
    tx_ids = (
        f"tx_ids {restored.first_tx}..{restored.last_tx} ({restored.runs} runs"
        + (f", {restored.spent} transaction ids spent first" if restored.spent else "")
        + ")"
    )
    print(
        f"restored {restored.events} events ({tx_ids}) and {loaded} "
        f"from the backup of {header.taken_at.isoformat(timespec='seconds')} "
        f"in {time.perf_counter() - started:.2f} s",
        flush=True,
    )
    from services.engine.replay import replay_command

    await replay_command(database_url)
    print("the relay publishes the whole log again when it starts (docs/operations.md)")
