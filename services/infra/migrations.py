"""Versioned migrations: the base (schema.sql) and numbered steps, each run once, with a lock
timeout, recorded in schema_migrations (docs/upgrades.md)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

import asyncpg
import msgspec
import structlog

from services.infra.package_files import package_file
from services.infra.sql_text import statements

log = structlog.get_logger("deployx.migrate")

SCHEMA_PATH = package_file("services.infra", "schema.sql")
STEPS_DIR = package_file("services.infra", "migrations")
# Several migrates may start together (a Job and `deployx up`): they take turns.
_LOCK = 7_240_001
# Step 0 in schema_migrations is the base: schema.sql, applied again only when its text changed.
BASE = 0
_STEP_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_OPTION = re.compile(r"^--\s*(phase|transaction):\s*(\S+)\s*$", re.M)

_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    step       integer          PRIMARY KEY,
    name       text             NOT NULL,
    phase      text             NOT NULL,
    checksum   text             NOT NULL,
    applied_at timestamptz      NOT NULL DEFAULT now(),
    seconds    double precision NOT NULL
)
"""
_RECORD = """
INSERT INTO schema_migrations (step, name, phase, checksum, seconds) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (step) DO UPDATE SET name = EXCLUDED.name, checksum = EXCLUDED.checksum,
    applied_at = now(), seconds = EXCLUDED.seconds
"""

Phase = Literal["expand", "contract"]


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """One migration: the base (number 0) or a numbered step of migrations/."""

    number: int
    name: str
    sql: str
    # expand: safe while the previous version's services run (they ignore what it adds);
    # contract: only once every service runs this version (drops what they no longer use).
    phase: Phase = "expand"
    # False for statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY): they
    # run one by one, each with the lock timeout, and must be safe to run again.
    transactional: bool = True

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class Status(msgspec.Struct, frozen=True, kw_only=True):
    """Where a database stands against this version's migrations."""

    base_pending: bool  # never applied, or schema.sql changed since
    pending: list[Step]  # expand steps `deployx migrate` would run, in order
    contract_pending: list[Step]  # contract steps waiting for `deployx migrate --contract`
    changed: list[str]  # applied steps whose file changed since: history was edited
    unknown: list[int]  # applied steps this version does not have: the database is newer

    @property
    def up_to_date(self) -> bool:
        return not (self.base_pending or self.pending)


class MigrationError(Exception):
    """A migration that cannot go on: a lock never granted, edited history, a newer database."""


def base_step(path: Path = SCHEMA_PATH) -> Step:
    return Step(number=BASE, name="base (schema.sql)", sql=path.read_text(), transactional=False)


def load_steps(directory: Path = STEPS_DIR) -> list[Step]:
    """migrations/NNNN_name.sql, numbered 1, 2, 3 ... without gaps."""
    steps = []
    for path in sorted(directory.glob("*.sql")):
        match = _STEP_FILE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: name a step NNNN_lowercase_words.sql")
        sql = path.read_text()
        options = dict(_OPTION.findall(sql))
        phase = options.get("phase", "expand")
        if phase not in ("expand", "contract"):
            raise MigrationError(f"{path.name}: phase is expand or contract, not {phase}")
        steps.append(
            Step(
                number=int(match.group(1)),
                name=match.group(2),
                sql=sql,
                phase="contract" if phase == "contract" else "expand",
                transactional=options.get("transaction", "on") != "none",
            )
        )
    numbers = [step.number for step in steps]
    if numbers != list(range(1, len(steps) + 1)):
        raise MigrationError(f"steps in {directory} must be numbered 1, 2, 3 ...: {numbers}")
    return steps


async def applied(conn: asyncpg.Connection) -> dict[int, str]:
    """Step number -> checksum of every step applied ({} before the first migrate)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT step, checksum FROM schema_migrations")
    return {row["step"]: row["checksum"] for row in rows}


async def highest_step(conn: asyncpg.Connection) -> int:
    """The highest numbered step applied (0: none, or only the base)."""
    return max(await applied(conn), default=BASE)


async def status(conn: asyncpg.Connection, base: Step, steps: list[Step]) -> Status:
    done = await applied(conn)
    known = {step.number for step in steps}
    waiting = [step for step in steps if step.number not in done]
    return Status(
        base_pending=done.get(BASE) != base.checksum,
        pending=[step for step in waiting if step.phase == "expand"],
        contract_pending=[step for step in waiting if step.phase == "contract"],
        changed=[
            f"{step.number:04d}_{step.name}"
            for step in steps
            if step.number in done and done[step.number] != step.checksum
        ],
        unknown=sorted(number for number in done if number != BASE and number not in known),
    )


async def migrate(
    database_url: str,
    *,
    contract: bool = False,
    lock_timeout: float = 5.0,
    give_up_after: float = 300.0,
    base: Step | None = None,
    steps: list[Step] | None = None,
) -> list[str]:
    """Applies what is pending: the base if schema.sql changed, then the expand steps in order
    (and, with contract, the contract steps whose earlier steps all ran). Returns their names.

    Nothing runs, and no table is locked, when the database is up to date. Every statement
    waits at most lock_timeout seconds for its locks, so writes queued behind it wait no
    longer; a step that times out is rolled back and tried again, until give_up_after.
    """
    base = base or base_step()
    steps = load_steps() if steps is None else steps
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK)
        try:
            await conn.execute(_TABLE)
            found = await status(conn, base, steps)
            if found.changed:
                raise MigrationError(
                    f"applied steps were edited since: {', '.join(found.changed)}; "
                    "add a new step instead of changing one that ran"
                )
            if found.unknown:
                log.warning("database_newer", steps=found.unknown)
            done: list[str] = []
            if found.base_pending:
                await _run(conn, base, lock_timeout, give_up_after)
                done.append(base.name)
            ran = set(await applied(conn))
            for step in steps:
                if step.number in ran:
                    continue
                if step.phase == "contract" and (
                    not contract or any(s.number not in ran for s in steps[: step.number - 1])
                ):
                    continue
                await _run(conn, step, lock_timeout, give_up_after)
                ran.add(step.number)
                done.append(f"{step.number:04d}_{step.name}")
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK)
    finally:
        await conn.close()


async def _run(conn: asyncpg.Connection, step: Step, lock_timeout: float, give_up: float) -> None:
    started = time.monotonic()
    timeout = f"{max(1, round(lock_timeout * 1000))}ms"
    if step.transactional:

        async def whole() -> None:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{timeout}'")
                await conn.execute(step.sql)

        await _patiently(whole, step, give_up)
    else:
        # One statement at a time, each in its own transaction: a lock is held only as long
        # as the statement that took it, never while a later one waits for another.
        await conn.execute(f"SET lock_timeout = '{timeout}'")
        try:
            for statement in statements(step.sql):

                async def one(sql: str = statement) -> None:
                    await conn.execute(sql)

                await _patiently(one, step, give_up)
        finally:
            await conn.execute("RESET lock_timeout")
    seconds = time.monotonic() - started
    await conn.execute(_RECORD, step.number, step.name, step.phase, step.checksum, seconds)
    log.info("migration_applied", step=step.number, name=step.name, seconds=round(seconds, 3))


async def _patiently(run: Callable[[], Awaitable[None]], step: Step, give_up: float) -> None:
    """Runs until it gets its locks in time; between tries, the writes it held up go on."""
    deadline = time.monotonic() + give_up
    pause = 0.1
    while True:
        try:
            await run()
            return
        except asyncpg.LockNotAvailableError:
            if time.monotonic() > deadline:
                raise MigrationError(
                    f"step {step.number} ({step.name}) did not get its locks for {give_up:.0f} "
                    "s: a long transaction holds the table; end it and run migrate again"
                ) from None
            log.info("migration_waiting_for_lock", step=step.number, retry_in=pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)
