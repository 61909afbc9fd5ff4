"""`deployx events`: the audit log as JSON lines, in log order."""

from __future__ import annotations

import sys

import asyncpg

from events.codec import encode_envelope
from services.infra.store import LogCursor, read_after, read_task_history

_CURSOR_OF = "SELECT tx_id::text::bigint AS tx_id, position FROM events WHERE position = $1"


async def print_events(database_url: str, task_id: str | None, after: int | None) -> int:
    """Writes events after position `after` (optionally only one task's) to stdout."""
    conn = await asyncpg.connect(database_url)
    try:
        cursor = LogCursor()
        if after is not None:
            row = await conn.fetchrow(_CURSOR_OF, after)
            if row is None:
                raise SystemExit(f"no event has position {after}")
            cursor = LogCursor(row["tx_id"], row["position"])
        if task_id is not None:
            history = await read_task_history(conn, task_id, cursor)
            for recorded in history:
                _write(encode_envelope(recorded))
            return len(history)
        count = 0
        while batch := await read_after(conn, cursor, 1000):
            for recorded in batch:
                _write(encode_envelope(recorded))
            count += len(batch)
            cursor = LogCursor.of(batch[-1])
        return count
    finally:
        await conn.close()


def _write(line: bytes) -> None:
    sys.stdout.buffer.write(line + b"\n")
