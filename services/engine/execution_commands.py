"""Commands on one execution's stream: cancel (and later ones), decided by the pure domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from events.codec import RecordedEvent
from services.domain.execution import evolve_all, fold, request_cancel
from services.infra.db import Db
from services.infra.store import ConcurrencyError, append, read_stream

# A cancel that lost a race (the run moved meanwhile) reads the stream and decides again.
ATTEMPTS = 5


async def cancel_execution(
    db: Db,
    execution_id: str,
    category: str,
    now: datetime,
    *,
    reason: str,
    metadata: dict[str, Any],
) -> list[RecordedEvent]:
    """Appends ExecutionCancelRequested; Conflict if the run finished or is being canceled.

    category is the run's task type, so that its executors hear of the cancel on NATS.
    """
    state = fold(execution_id, ())
    for attempt in range(ATTEMPTS):
        # After a lost race only what was appended since is read: a busy run appends every
        # few tens of milliseconds, and reading (and folding) its whole stream again each time
        # would lose the next race too.
        newer = await read_stream(db, execution_id, after_version=state.version)
        state = evolve_all(state, (recorded.event for recorded in newer))
        event = request_cancel(state, now, reason)
        try:
            return await append(
                db,
                execution_id,
                category,
                [event],
                expected_version=state.version,
                metadata=metadata,
            )
        except ConcurrencyError:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")
