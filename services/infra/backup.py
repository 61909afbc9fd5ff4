"""`deployx backup`: one consistent snapshot of the log and of what replay cannot rebuild."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec

from services.infra.backup_file import End, Header, Role, Section, Sequences, Writer
from services.infra.migrations import highest_step

# Tables restore treats on their own: the log (tx_ids rewritten, positions kept), the audit
# chain (verbatim: its seals cover positions, never tx_ids), the readers' checkpoints (moved to
# the rewritten tx_ids).
SPECIAL: dict[str, Role] = {"events": "log", "audit_chain": "seals", "checkpoints": "checkpoints"}
# Tables not backed up: the migrations' record (restore migrates the new database itself) and
# device presence (a fact about now: agents report again within seconds).
NOT_BACKED_UP = {"schema_migrations", "device_presence", "registry_heard"}
# xid8 columns of kept tables that hold the tx_id of an event (named by the second column):
# restore sets them to that event's new tx_id. Any other xid8 column stops a backup, since a
# transaction id means nothing on another server.
EVENT_TX_COLUMNS: dict[str, tuple[str, str]] = {"webhook_deliveries": ("log_tx", "event_id")}

_TABLES = """
SELECT c.relname AS name,
       array_agg(a.attname::text ORDER BY a.attnum) AS columns,
       coalesce(array_agg(a.attname::text ORDER BY a.attnum)
                    FILTER (WHERE a.atttypid = 'xid8'::regtype), '{}') AS xid8_columns
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    AND a.attgenerated = ''
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
GROUP BY c.relname
"""
_FOREIGN_KEYS = """
SELECT child.relname AS child, parent.relname AS parent
FROM pg_constraint k
JOIN pg_class child ON child.oid = k.conrelid
JOIN pg_class parent ON parent.oid = k.confrelid
WHERE k.contype = 'f' AND k.connamespace = current_schema()::regnamespace
"""
_SEQUENCES = """
SELECT sequencename AS name, last_value FROM pg_sequences WHERE schemaname = current_schema()
"""
_ORDER = {"events": "tx_id, position", "audit_chain": "seq", "checkpoints": "name"}


class BackupError(Exception):
    """The database holds something a backup could not carry to another server."""


class Table(msgspec.Struct, frozen=True):
    name: str
    role: Role
    columns: list[str]


def quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


async def table_plan(conn: asyncpg.Connection, rebuilt: Collection[str]) -> list[Table]:
    """Every table to back up, in the order restore loads them: checkpoints, the log, the
    chain, then the kept tables, parents before the tables whose foreign keys name them.

    rebuilt: the projections' tables, which replay rebuilds from the log.
    """
    tables = {row["name"]: row for row in await conn.fetch(_TABLES)}
    missing = set(SPECIAL) - set(tables)
    if missing:
        raise BackupError(f"not a DeployX database: no table {', '.join(sorted(missing))}")
    kept = sorted(set(tables) - set(SPECIAL) - NOT_BACKED_UP - set(rebuilt))
    for name in kept:
        unknown = set(tables[name]["xid8_columns"]) - {EVENT_TX_COLUMNS.get(name, ("",))[0]}
        if unknown:
            raise BackupError(
                f"table {name} has transaction ids ({', '.join(sorted(unknown))}) that would "
                "mean nothing on another server: tell services/infra/backup.py what they are"
            )
    parents: dict[str, set[str]] = {name: set() for name in kept}
    for row in await conn.fetch(_FOREIGN_KEYS):
        if row["child"] in parents and row["parent"] != row["child"]:
            parents[row["child"]].add(row["parent"])
    ordered: list[str] = []
    while len(ordered) < len(kept):
        ready = [n for n in kept if n not in ordered and parents[n] <= set(ordered)]
        if not ready:
            raise BackupError(f"foreign keys in a cycle among {set(kept) - set(ordered)}")
        ordered += ready
    plan = [Table(name, role, list(tables[name]["columns"])) for name, role in SPECIAL.items()]
    plan.sort(key=lambda table: ("checkpoints", "log", "seals").index(table.role))
    return plan + [Table(name, "kept", list(tables[name]["columns"])) for name in ordered]


async def backup(conn: asyncpg.Connection, out: Path, rebuilt: Collection[str]) -> End:
    """Writes the backup of the database conn is connected to; services may go on meanwhile.

    Everything is read in one REPEATABLE READ snapshot, so the file is the database at one
    instant: the log, the seals and every kept table agree. A read-only transaction takes no
    transaction id, so it holds back no reader of the log.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        plan = await table_plan(conn, rebuilt)  # the first query: the snapshot is taken here
        header = Header(
            taken_at=datetime.now(UTC),
            server_version=str(await conn.fetchval("SHOW server_version")),
            schema_step=await highest_step(conn),
        )
        writer = Writer(out)
        try:
            writer.line(header)
            rows: dict[str, int] = {}
            runs = 0
            for table in plan:
                count = int(await conn.fetchval(f"SELECT count(*) FROM {quoted(table.name)}"))
                writer.line(
                    Section(name=table.name, role=table.role, columns=table.columns, rows=count)
                )
                query = _rows_query(table)
                written, previous = 0, None
                async for row in conn.cursor(query, prefetch=2000):
                    writer.raw(row[0].encode())
                    written += 1
                    if table.role == "log":
                        # A new run wherever log order goes back in position (see restore).
                        if previous is None or row[1] < previous:
                            runs += 1
                        previous = row[1]
                if written != count:
                    raise BackupError(f"{table.name}: counted {count} rows, read {written}")
                rows[table.name] = count
            # Read last: a sequence is not part of the snapshot, and its value now is at least
            # that of any row read above.
            sequences = {row["name"]: row["last_value"] for row in await conn.fetch(_SEQUENCES)}
            writer.line(Sequences(values=sequences))
            return writer.finish(rows, runs)
        except BaseException:
            writer.abandon()
            raise


def _rows_query(table: Table) -> str:
    """Each row as PostgreSQL's JSON of it (every type round-trips through it), and for the
    log its position; in a fixed order where restore needs one."""
    position = "t.position" if table.role == "log" else "NULL"
    order = f" ORDER BY {_ORDER[table.name]}" if table.name in _ORDER else ""
    return f"SELECT to_jsonb(t)::text, {position} FROM {quoted(table.name)} t{order}"
