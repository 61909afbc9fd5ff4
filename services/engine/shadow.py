"""Shadow tables: a projection rebuilt beside its live tables, then swapped in by one transaction.

The shadow schema holds a copy of each table's shape (columns, defaults, checks, keys) and its
own `checkpoints` and `dead_letters`; a connection whose search_path starts with it runs the
ordinary projector code against the copies while readers keep using the live tables. Secondary
indexes are built once the bulk is in, which is cheaper than keeping them up row by row.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from projections.base import Projection
from projections.counts import COUNT_TABLES, REFRESH, with_counts
from services.infra.store import Connection

SHADOW = "deployx_shadow"
RETIRED = "deployx_retired"
# The projector's own tables that a rebuild keeps apart in the shadow schema.
_BOOKKEEPING = ("checkpoints", "dead_letters")


def shadow_name(projection: Projection) -> str:
    """The name a rebuild runs under: its own checkpoint and advisory lock, not the live one's."""
    return f"{projection.name}@rebuild"


async def create(
    conn: Connection,
    projections: tuple[Projection, ...],
    keys_later: Collection[str] = (),
) -> None:
    """A fresh shadow schema with empty copies of the projections' tables (whatever a killed
    rebuild left there is dropped). The tables in keys_later get their keys from add_keys,
    once filled: an index built over the rows at once is cheaper than one kept up row by row."""
    await conn.execute(f"DROP SCHEMA IF EXISTS {SHADOW} CASCADE")
    await conn.execute(f"CREATE SCHEMA {SHADOW}")
    for table in (*_BOOKKEEPING, *_tables(projections)):
        await conn.execute(
            f"CREATE TABLE {SHADOW}.{table} (LIKE public.{table} INCLUDING DEFAULTS "
            "INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING IDENTITY)"
        )
        if table not in keys_later:
            await add_keys(conn, [table])


async def add_keys(conn: Connection, tables: Iterable[str]) -> None:
    """The live tables' primary keys and unique and exclusion constraints, under the same
    names, on the copies."""
    for table in tables:
        for name, definition in await conn.fetch(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = $1::regclass AND contype IN ('p', 'u', 'x')",
            f"public.{table}",
        ):
            await conn.execute(f"ALTER TABLE {SHADOW}.{table} ADD CONSTRAINT {name} {definition}")


async def add_indexes(conn: Connection, projections: tuple[Projection, ...]) -> None:
    """The live tables' other indexes and triggers, under the same names, on the copies."""
    for table in _tables(projections):
        for (definition,) in await conn.fetch(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "WHERE i.indrelid = $1::regclass AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
            f"public.{table}",
        ):
            await conn.execute(_retarget(definition, table))
        for (definition,) in await conn.fetch(
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger "
            "WHERE tgrelid = $1::regclass AND NOT tgisinternal",
            f"public.{table}",
        ):
            await conn.execute(_retarget(definition, table))
        await conn.execute(f"ANALYZE {SHADOW}.{table}")
    if COUNT_TABLES[0] in _tables(projections):
        # The copies filled without triggers: their counts from what they hold now (the
        # caller's search_path names the shadow schema first), kept by the triggers from here.
        await conn.execute(REFRESH)


def _retarget(definition: str, table: str) -> str:
    return re.sub(rf" ON (public\.)?{table} ", f" ON {SHADOW}.{table} ", definition, count=1)


async def swap(conn: Connection, projections: tuple[Projection, ...]) -> None:
    """Inside the caller's transaction (which holds the projections' advisory locks and has
    caught the copies up): the copies become the live tables, with their checkpoints and
    dead letters. Readers wait only for the last statement, one round trip of renames; the
    caller bounds its lock waits with lock_timeout and drops the old tables afterwards."""
    for projection in projections:
        await conn.execute(
            f"""
            INSERT INTO public.checkpoints (name, tx_id, position, updated_at, projection_version)
            SELECT $1, tx_id, position, now(), $3 FROM {SHADOW}.checkpoints WHERE name = $2
            ON CONFLICT (name) DO UPDATE SET tx_id = EXCLUDED.tx_id,
                position = EXCLUDED.position, updated_at = EXCLUDED.updated_at,
                projection_version = EXCLUDED.projection_version
            """,
            projection.name,
            shadow_name(projection),
            projection.version,
        )
        # Rebuilt from nothing, a projection has set aside again whatever still fails.
        await conn.execute("DELETE FROM public.dead_letters WHERE consumer = $1", projection.name)
        await conn.execute(
            f"""
            INSERT INTO public.dead_letters (consumer, event_id, position, stream_id, event_type,
                error, attempts, created_at, updated_at)
            SELECT $1, event_id, position, stream_id, event_type, error, attempts, created_at,
                updated_at
            FROM {SHADOW}.dead_letters WHERE consumer = $2
            """,
            projection.name,
            shadow_name(projection),
        )
    await conn.execute(f"DROP SCHEMA IF EXISTS {RETIRED} CASCADE")
    await conn.execute(f"CREATE SCHEMA {RETIRED}")
    tables = _tables(projections)
    live = ", ".join(f"public.{table}" for table in tables)
    renames = [f"LOCK TABLE {live} IN ACCESS EXCLUSIVE MODE"]
    for table in tables:
        renames.append(f"ALTER TABLE public.{table} SET SCHEMA {RETIRED}")
        renames.append(f"ALTER TABLE {SHADOW}.{table} SET SCHEMA public")
    await conn.execute(";\n".join(renames))


async def drop_retired(conn: Connection) -> None:
    """The tables a swap replaced (nobody can reach them: they left public)."""
    await conn.execute(f"DROP SCHEMA IF EXISTS {RETIRED} CASCADE")


async def drop(conn: Connection) -> None:
    await conn.execute(f"DROP SCHEMA IF EXISTS {SHADOW} CASCADE")


def _tables(projections: tuple[Projection, ...]) -> list[str]:
    """The projections' tables, with the counts kept beside them (projections/counts.py)."""
    return with_counts(table for projection in projections for table in projection.tables)
