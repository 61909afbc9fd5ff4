"""`deployx restore`: a backup into an empty database, on a server with its own transaction ids.

The log is read in (tx_id, position) order (docs/event-log.md), and tx_ids are the old server's:
kept as they are, a server whose counter is behind would give every later event a lower tx_id
than the restored ones, and readers past those would never see it. So restore keeps every
position (the audit chain seals positions) and the log's order, and rewrites the tx_ids to
values the new server has already passed: at most the restore's own transaction id.

Log order cut into runs where the position goes down (commits that were out of position
order) needs one tx_id per run, and no more: run i of R gets tx_id restore_xid - R + i. If the
server's counter is below R, restore first spends transaction ids until it is not.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import msgspec
import structlog

from services.infra.backup import EVENT_TX_COLUMNS, quoted
from services.infra.backup_file import End, Header, Reader, Section, Sequences
from services.infra.store import LogCursor, save_checkpoint

log = structlog.get_logger("deployx.restore")

BATCH = 2000
# The relay's checkpoint is not restored: it publishes the whole log again (docs/operations.md).
RELAY = "relay"

_COLUMNS = """
SELECT a.attname::text FROM pg_attribute a
WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
"""


class RestoreError(Exception):
    """The backup cannot go into this database (not empty, newer schema, missing columns)."""


class Restored(msgspec.Struct, frozen=True, kw_only=True):
    events: int
    runs: int
    first_tx: int | None  # the restored log's tx_ids on this server
    last_tx: int | None
    spent: int  # transaction ids spent to bring the counter past the runs
    rows: dict[str, int]


class _Key(msgspec.Struct):
    tx_id: str
    position: int


class _Checkpoint(msgspec.Struct):
    name: str
    tx_id: str
    position: int


_key = msgspec.json.Decoder(_Key)
_checkpoint = msgspec.json.Decoder(_Checkpoint)


def runs_of(positions: list[int]) -> list[int]:
    """The run (1, 2, ...) of each event, given the positions in log order: a new run starts
    wherever a position is lower than the one before."""
    runs, run, previous = [], 0, None
    for position in positions:
        if previous is None or position < previous:
            run += 1
        runs.append(run)
        previous = position
    return runs


async def is_empty(conn: asyncpg.Connection) -> bool:
    return not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM events) OR EXISTS (SELECT 1 FROM audit_chain)"
    )


async def advance_transaction_ids(conn: asyncpg.Connection, at_least: int) -> int:
    """Spends transaction ids until the server's counter is at least at_least; how many.

    Each id is a transaction that commits nothing; about 200,000 a second, since none waits
    for its commit to reach the disk.
    """
    current = int(await conn.fetchval("SELECT pg_current_xact_id()::text::bigint"))
    spend = at_least - current
    if spend <= 0:
        return 0
    await conn.execute("SET synchronous_commit = off")
    try:
        await conn.execute(
            "DO $$ BEGIN FOR i IN 1.." + str(spend) + " LOOP PERFORM pg_current_xact_id(); "
            "COMMIT; END LOOP; END $$"
        )
    finally:
        await conn.execute("RESET synchronous_commit")
    return spend


async def restore(
    conn: asyncpg.Connection, path: Path, header: Header, end: End, known_step: int
) -> Restored:
    """Loads a checked backup (backup_file.check) into the empty database conn is on, in one
    transaction. The read tables are left to replay."""
    if header.schema_step > known_step:
        raise RestoreError(
            f"the backup was taken at schema step {header.schema_step}, this version knows "
            f"steps up to {known_step}: restore it with the version that took it, or a newer one"
        )
    if not await is_empty(conn):
        raise RestoreError("the database already holds events: restore needs a new, empty one")
    # Every run's tx_id must be one the server has passed: the restore's own, and those below.
    spent = await advance_transaction_ids(conn, end.runs + 1)
    with path.open("rb") as file:
        reader = Reader(file)
        async with conn.transaction():
            # Appends wait until the restore is in (or gone); then the log must still be empty.
            await conn.execute("LOCK TABLE events IN EXCLUSIVE MODE")
            if not await is_empty(conn):
                raise RestoreError("events were appended meanwhile: stop the services first")
            xid = int(await conn.fetchval("SELECT pg_current_xact_id()::text::bigint"))
            loader = _Loader(conn, base=xid - end.runs)
            for line in reader:
                if isinstance(line, Section):
                    await loader.section(reader, line)
                elif isinstance(line, Sequences):
                    await loader.sequences(line)
            if loader.runs != end.runs:
                raise RestoreError(f"the log has {loader.runs} runs, its end line says {end.runs}")
            await loader.finish()
    events = loader.rows.get("events", 0)
    return Restored(
        events=events,
        runs=loader.runs,
        first_tx=xid - end.runs + 1 if events else None,
        last_tx=xid if events else None,
        spent=spent,
        rows=loader.rows,
    )


class _Loader:
    """Loads sections in file order within the restore's transaction."""

    def __init__(self, conn: asyncpg.Connection, base: int) -> None:
        self.conn, self.base = conn, base
        self.runs = 0
        self.rows: dict[str, int] = {}
        self._previous: int | None = None
        # The old checkpoints, in log order, and the new cursor of the last event at or
        # before each; the log streams past them in order.
        self._checkpoints: list[tuple[tuple[int, int], str]] = []
        self._mapped: dict[str, LogCursor] = {}
        self._next = 0
        self._last = LogCursor()

    async def section(self, reader: Reader, section: Section) -> None:
        columns = await self._columns(section)
        loaded = 0
        for chunk in reader.rows(section, BATCH):
            if section.role == "checkpoints":
                self._checkpoints += [
                    ((int(c.tx_id), c.position), c.name) for c in map(_checkpoint.decode, chunk)
                ]
            elif section.role == "log":
                await self._events(columns, chunk)
            else:
                await self._kept(section, columns, chunk)
            loaded += len(chunk)
        self._checkpoints.sort()
        self.rows[section.name] = loaded
        if section.name in EVENT_TX_COLUMNS:
            tx_column, event_column = EVENT_TX_COLUMNS[section.name]
            await self.conn.execute(
                f"UPDATE {quoted(section.name)} t SET {quoted(tx_column)} = e.tx_id "
                f"FROM events e WHERE e.id = t.{quoted(event_column)}"
            )

    async def _columns(self, section: Section) -> list[str]:
        """The backup's columns this database has; every one of them must be there."""
        target = {row[0] for row in await self.conn.fetch(_COLUMNS, section.name)}
        if not target:
            raise RestoreError(f"this database has no table {section.name}")
        lost = [column for column in section.columns if column not in target]
        if lost:
            raise RestoreError(f"table {section.name} has no column {', '.join(lost)} here")
        return [column for column in section.columns if column != "tx_id" or section.role != "log"]

    async def _events(self, columns: list[str], chunk: list[bytes]) -> None:
        tx_ids = []
        for raw in chunk:
            key = _key.decode(raw)
            if self._previous is None or key.position < self._previous:
                self.runs += 1
            self._previous = key.position
            new = LogCursor(self.base + self.runs, key.position)
            old = (int(key.tx_id), key.position)
            while self._next < len(self._checkpoints) and old > self._checkpoints[self._next][0]:
                self._mapped[self._checkpoints[self._next][1]] = self._last
                self._next += 1
            self._last = new
            tx_ids.append(new.tx_id)
        names = ", ".join(quoted(column) for column in columns)
        selected = ", ".join(f"r.{quoted(column)}" for column in columns)
        await self.conn.execute(
            f"INSERT INTO events ({names}, tx_id) SELECT {selected}, t.tx::text::xid8 "
            "FROM jsonb_populate_recordset(NULL::events, $1::jsonb) WITH ORDINALITY AS r "
            "JOIN unnest($2::bigint[]) WITH ORDINALITY AS t(tx, n) ON t.n = r.ordinality",
            _array(chunk),
            tx_ids,
        )

    async def _kept(self, section: Section, columns: list[str], chunk: list[bytes]) -> None:
        names = ", ".join(quoted(column) for column in columns)
        table = quoted(section.name)
        # Rows the new database made itself (the admin token of `deployx up`) stay.
        conflict = "" if section.role == "seals" else " ON CONFLICT DO NOTHING"
        await self.conn.execute(
            f"INSERT INTO {table} ({names}) SELECT {names} "
            f"FROM jsonb_populate_recordset(NULL::{table}, $1::jsonb){conflict}",
            _array(chunk),
        )

    async def sequences(self, line: Sequences) -> None:
        """Each sequence at least where it was: read after the rows, its value is at least
        every id restored, so none is handed out again (events' positions included)."""
        for name, value in line.values.items():
            exists = await self.conn.fetchval("SELECT to_regclass($1) IS NOT NULL", quoted(name))
            if value is not None and exists:
                await self.conn.execute(
                    "SELECT setval($1::regclass, greatest($2, coalesce(pg_sequence_last_value("
                    "$1::regclass), 0)))",
                    quoted(name),
                    value,
                )

    async def finish(self) -> None:
        # Checkpoints past the last event (or with no event before them) keep what they had.
        for _, name in self._checkpoints[self._next :]:
            self._mapped[name] = self._last
        for name, cursor in self._mapped.items():
            if name != RELAY:
                await save_checkpoint(self.conn, name, cursor)


def _array(chunk: list[bytes]) -> str:
    return (b"[" + b",".join(chunk) + b"]").decode()
