"""Finishes executions left `running` past their deadline, e.g. after every executor died: a
thin shell around the domain's `abandon`."""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from services.domain.execution import abandon, fold
from services.infra.db import Db
from services.infra.store import ConcurrencyError, append, read_stream

log = structlog.get_logger("deployx.reconciler")

# Past its deadline by this much, a running execution has no executor left to finish it.
MARGIN = timedelta(seconds=60)
# An execution no executor ever started is given up after this long.
NEVER_STARTED = timedelta(hours=1)
METADATA = {"user": "scheduler", "service": "reconciler"}

_STALE = """
SELECT id::text, coalesce(task_id::text, '') AS task_id FROM executions
WHERE status = 'running' AND task_type = $1
  AND coalesce(deadline + $3::interval, scheduled_for + $4::interval) < $2
ORDER BY scheduled_for LIMIT 100
"""


async def reconcile(db: Db, task_type: str, now: datetime) -> int:
    """Closes stale executions of one task type; returns how many it closed."""
    rows = await db.fetch(_STALE, task_type, now, MARGIN, NEVER_STARTED)
    closed = 0
    for row in rows:
        closed += await _close(db, row["id"], row["task_id"], task_type, now)
    return closed


async def _close(db: Db, execution_id: str, task_id: str, task_type: str, now: datetime) -> int:
    history = await read_stream(db, execution_id)
    state = fold(execution_id, (recorded.event for recorded in history), task_id)
    events = abandon(state, now)
    if not events:
        return 0  # completed already: the read table is behind
    try:
        await append(
            db, execution_id, task_type, events, expected_version=len(history), metadata=METADATA
        )
    except ConcurrencyError:
        return 0  # an executor is still at it after all
    log.warning("execution_reconciled", execution_id=execution_id)
    return 1
