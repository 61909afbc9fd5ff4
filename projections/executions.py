"""The executions read tables: one row per run, its per-device results, and hourly stats."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from datetime import datetime

import msgspec

from events.codec import RecordedEvent
from events.execution import (
    DeviceJobDispatched,
    DeviceResultRecorded,
    DevicesWaiting,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionRequested,
    ExecutionStarted,
    ExecutionTargetsAdded,
)
from events.task import TaskDue
from projections.base import Db
from projections.batching import (
    Batched,
    apply_in_runs,
    from_log,
    json_rows_writer,
    log_defaults,
    rows_json,
    stored_as_decoded,
)

_json = msgspec.json.Encoder()
# A device's row moves pending -> waiting/running -> a final status, never back from final.
_NOT_FINAL = "execution_results.status IN ('pending', 'waiting', 'running')"


_HANDLED = (
    TaskDue,
    ExecutionRequested,
    ExecutionStarted,
    ExecutionTargetsAdded,
    DeviceJobDispatched,
    DevicesWaiting,
    ExecutionCancelRequested,
    DeviceResultRecorded,
    ExecutionCompleted,
)
_FINAL_NOT = ("pending", "waiting", "running")


class ExecutionsProjection:
    name = "executions"
    tables = ("executions", "execution_results", "execution_stats_hourly")
    version = 1

    async def apply_batch(self, conn: Db, batch: Sequence[RecordedEvent]) -> None:
        await apply_in_runs(conn, batch, _HANDLED, _BATCHED, self.apply)

    async def apply(self, conn: Db, recorded: RecordedEvent) -> None:
        event = recorded.event
        match event:
            case TaskDue():
                # The run exists from the moment it is due, so a GET after "execute now" shows it.
                await conn.execute(
                    """
                    INSERT INTO executions (id, task_id, task_type, trigger, scheduled_for,
                        status)
                    VALUES ($1, $2, $3, $4, $5, 'running')
                    ON CONFLICT (id) DO NOTHING
                    """,
                    event.execution_id,
                    event.task_id,
                    recorded.category,
                    event.trigger,
                    event.scheduled_for,
                )
            case ExecutionRequested():
                await conn.execute(
                    """
                    INSERT INTO executions (id, task_id, task_type, trigger, scheduled_for,
                        status, name, requested_by, rerun_of, delivery)
                    VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8, $9::jsonb)
                    ON CONFLICT (id) DO NOTHING
                    """,
                    event.execution_id,
                    event.task_id,
                    event.task_type,
                    event.trigger,
                    event.requested_at,
                    event.name,
                    str(recorded.metadata.get("user", "")),
                    event.rerun_of,
                    _json.encode(event.delivery).decode(),
                )
            case ExecutionStarted():
                await conn.execute(
                    """
                    UPDATE executions SET started_at = $2, deadline = $3, devices_targeted = $4,
                        delivery = $5::jsonb
                    WHERE id = $1
                    """,
                    event.execution_id,
                    event.started_at,
                    event.deadline,
                    max(event.devices_targeted, len(event.device_ids)),
                    _json.encode(event.delivery).decode(),
                )
                # One row per target from the start: the run shows who is still pending.
                await conn.execute(
                    """
                    INSERT INTO execution_results (execution_id, device_id, status, recorded_at)
                    SELECT $1, device, 'pending', $3 FROM unnest($2::text[]) AS device
                    ON CONFLICT (execution_id, device_id) DO NOTHING
                    """,
                    event.execution_id,
                    event.device_ids,
                    event.started_at,
                )
            case ExecutionTargetsAdded():
                await conn.execute(
                    """
                    INSERT INTO execution_results (execution_id, device_id, status, recorded_at)
                    SELECT $1, device, 'pending', $3 FROM unnest($2::text[]) AS device
                    ON CONFLICT (execution_id, device_id) DO NOTHING
                    """,
                    event.execution_id,
                    event.device_ids,
                    recorded.recorded_at,
                )
            case DeviceJobDispatched():
                await _progress(conn, event.execution_id, event.device_ids, "running",
                                event.dispatched_at)  # fmt: skip
            case DevicesWaiting():
                await _progress(conn, event.execution_id, event.device_ids, "waiting", event.since)
            case ExecutionCancelRequested():
                await conn.execute(
                    "UPDATE executions SET cancel_requested_at = $2 WHERE id = $1",
                    event.execution_id,
                    event.requested_at,
                )
            case DeviceResultRecorded():
                await conn.execute(
                    f"""
                    INSERT INTO execution_results (execution_id, device_id, status, exit_code,
                        stdout, stderr, error, recorded_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                    ON CONFLICT (execution_id, device_id) DO UPDATE SET
                        status = EXCLUDED.status, exit_code = EXCLUDED.exit_code,
                        stdout = EXCLUDED.stdout, stderr = EXCLUDED.stderr,
                        error = EXCLUDED.error, recorded_at = EXCLUDED.recorded_at
                    WHERE {_NOT_FINAL}
                    """,
                    event.execution_id,
                    event.device_id,
                    event.status,
                    event.exit_code,
                    event.stdout,
                    event.stderr,
                    event.error,
                    event.recorded_at,
                )
            case ExecutionCompleted():
                await _completed(conn, event)


async def _progress(
    conn: Db, execution_id: str, devices: list[str], status: str, when: datetime
) -> None:
    await conn.execute(
        f"""
        INSERT INTO execution_results (execution_id, device_id, status, recorded_at)
        SELECT $1, device, $3, $4 FROM unnest($2::text[]) AS device
        ON CONFLICT (execution_id, device_id) DO UPDATE SET
            status = EXCLUDED.status, recorded_at = EXCLUDED.recorded_at
        WHERE {_NOT_FINAL}
        """,
        execution_id,
        devices,
        status,
        when,
    )


async def _completed(conn: Db, event: ExecutionCompleted) -> None:
    finished = await conn.fetchval(
        """
        UPDATE executions SET status = $2, completed_at = $3, error_message = $4,
            devices_targeted = $5, devices_succeeded = $6, devices_failed = $7
        WHERE id = $1 AND status = 'running'
        RETURNING coalesce(task_id::text, '')
        """,
        event.execution_id,
        event.status,
        event.completed_at,
        event.error_message,
        event.devices_targeted,
        event.devices_succeeded,
        event.devices_failed,
    )
    if not finished:
        return  # already applied, or an ad-hoc run: no task to count it for
    succeeded = 1 if event.status == "success" else 0
    await conn.execute(
        """
        INSERT INTO execution_stats_hourly (task_id, hour, succeeded, failed)
        VALUES ($1, date_trunc('hour', $2::timestamptz), $3, $4)
        ON CONFLICT (task_id, hour) DO UPDATE SET
            succeeded = execution_stats_hourly.succeeded + EXCLUDED.succeeded,
            failed = execution_stats_hourly.failed + EXCLUDED.failed
        """,
        finished,
        event.completed_at,
        succeeded,
        1 - succeeded,
    )


# --- Runs of one event type, one statement each (apply_batch) --------------------------------

_DUE_MANY = """
INSERT INTO executions (id, task_id, task_type, trigger, scheduled_for, status)
SELECT execution_id, task_id, task_type, trigger, scheduled_for, 'running'
FROM json_to_recordset($1::json) AS x(execution_id uuid, task_id uuid, task_type text,
    trigger text, scheduled_for timestamptz)
ON CONFLICT (id) DO NOTHING
"""


_due_many = json_rows_writer(
    _DUE_MANY,
    TaskDue,
    lambda event, recorded: {
        "execution_id": event.execution_id,
        "task_id": event.task_id,
        "task_type": recorded.category,
        "trigger": event.trigger,
        "scheduled_for": event.scheduled_for,
    },
)


_STARTED_MANY = """
WITH x AS (
    SELECT * FROM json_to_recordset($1::json) AS x(execution_id uuid, started_at timestamptz,
        deadline timestamptz, device_ids text[], devices_targeted integer, delivery jsonb)
), started AS (
    UPDATE executions SET started_at = x.started_at, deadline = x.deadline,
        devices_targeted = greatest(x.devices_targeted, cardinality(x.device_ids)),
        delivery = x.delivery
    FROM x WHERE executions.id = x.execution_id
)
INSERT INTO execution_results (execution_id, device_id, status, recorded_at)
SELECT x.execution_id, device, 'pending', x.started_at FROM x, unnest(x.device_ids) AS device
ON CONFLICT (execution_id, device_id) DO NOTHING
"""


_started_many = json_rows_writer(
    _STARTED_MANY,
    ExecutionStarted,
    lambda event, _: {
        "execution_id": event.execution_id,
        "started_at": event.started_at,
        "deadline": event.deadline,
        "device_ids": event.device_ids,
        "devices_targeted": event.devices_targeted,
        "delivery": event.delivery,
    },
)


_TARGETS_MANY = """
INSERT INTO execution_results (execution_id, device_id, status, recorded_at)
SELECT x.execution_id, device, 'pending', x.at
FROM json_to_recordset($1::json) AS x(execution_id uuid, device_ids text[], at timestamptz),
    unnest(x.device_ids) AS device
ON CONFLICT (execution_id, device_id) DO NOTHING
"""


_targets_many = json_rows_writer(
    _TARGETS_MANY,
    ExecutionTargetsAdded,
    lambda event, recorded: {
        "execution_id": event.execution_id,
        "device_ids": event.device_ids,
        "at": recorded.recorded_at,
    },
)


_RESULT_FIELDS = """execution_id uuid, device_id text, status text, exit_code bigint,
    stdout text, stderr text, error text, recorded_at timestamptz"""
_RESULTS_MANY = f"""
INSERT INTO execution_results (execution_id, device_id, status, exit_code, stdout, stderr,
    error, recorded_at)
SELECT x.execution_id, x.device_id, x.status, x.exit_code::integer, x.stdout, x.stderr,
    x.error, x.recorded_at
FROM {{rows}}
ON CONFLICT (execution_id, device_id) DO UPDATE SET
    status = EXCLUDED.status, exit_code = EXCLUDED.exit_code,
    stdout = EXCLUDED.stdout, stderr = EXCLUDED.stderr,
    error = EXCLUDED.error, recorded_at = EXCLUDED.recorded_at
WHERE {_NOT_FINAL}
"""
_RESULTS_FROM_JSON = _RESULTS_MANY.format(
    rows=f"json_to_recordset($1::json) AS x({_RESULT_FIELDS})"
)
# The same rows read from the log itself (no JSON through Python).
_RESULTS_FROM_LOG = _RESULTS_MANY.format(rows=from_log(_RESULT_FIELDS))
_RESULT_DEFAULTS = log_defaults(DeviceResultRecorded)


async def _results_many(conn: Db, run: list[RecordedEvent]) -> None:
    # One row per device: applied one by one, the first final result of a device would win
    # (later ones find it final), else its last one.
    chosen: dict[tuple[str, str], RecordedEvent] = {}
    for recorded in run:
        event = recorded.event
        assert isinstance(event, DeviceResultRecorded)
        key = (event.execution_id, event.device_id)
        before = chosen.get(key)
        if before is None or _not_final(before):
            chosen[key] = recorded
    if stored_as_decoded(DeviceResultRecorded):
        positions = [recorded.position for recorded in chosen.values()]
        await conn.execute(_RESULTS_FROM_LOG, positions, _RESULT_DEFAULTS)
        return
    rows = [msgspec.structs.asdict(recorded.event) for recorded in chosen.values()]
    await conn.execute(_RESULTS_FROM_JSON, rows_json(rows))


def _not_final(recorded: RecordedEvent) -> bool:
    event = recorded.event
    assert isinstance(event, DeviceResultRecorded)
    return event.status in _FINAL_NOT


_COMPLETED_MANY = """
WITH x AS (
    SELECT * FROM json_to_recordset($1::json) AS x(execution_id uuid, status text,
        completed_at timestamptz, error_message text, devices_targeted integer,
        devices_succeeded integer, devices_failed integer)
), done AS (
    UPDATE executions SET status = x.status, completed_at = x.completed_at,
        error_message = x.error_message, devices_targeted = x.devices_targeted,
        devices_succeeded = x.devices_succeeded, devices_failed = x.devices_failed
    FROM x WHERE executions.id = x.execution_id AND executions.status = 'running'
    RETURNING executions.task_id, x.status, x.completed_at
)
INSERT INTO execution_stats_hourly (task_id, hour, succeeded, failed)
SELECT task_id, date_trunc('hour', completed_at),
    (count(*) FILTER (WHERE status = 'success'))::integer,
    (count(*) FILTER (WHERE status <> 'success'))::integer
FROM done WHERE task_id IS NOT NULL
GROUP BY 1, 2
ON CONFLICT (task_id, hour) DO UPDATE SET
    succeeded = execution_stats_hourly.succeeded + EXCLUDED.succeeded,
    failed = execution_stats_hourly.failed + EXCLUDED.failed
"""


_completed_many = json_rows_writer(
    _COMPLETED_MANY, ExecutionCompleted, lambda event, _: msgspec.structs.asdict(event)
)


_PROGRESS_MANY = f"""
INSERT INTO execution_results (execution_id, device_id, status, recorded_at)
SELECT x.execution_id, device, $2, x.at
FROM json_to_recordset($1::json) AS x(execution_id uuid, device_ids text[], at timestamptz),
    unnest(x.device_ids) AS device
ON CONFLICT (execution_id, device_id) DO UPDATE SET
    status = EXCLUDED.status, recorded_at = EXCLUDED.recorded_at
WHERE {_NOT_FINAL}
"""
_dispatched_many = json_rows_writer(
    _PROGRESS_MANY,
    DeviceJobDispatched,
    lambda event, _: {
        "execution_id": event.execution_id,
        "device_ids": event.device_ids,
        "at": event.dispatched_at,
    },
    "running",
)
_waiting_many = json_rows_writer(
    _PROGRESS_MANY,
    DevicesWaiting,
    lambda event, _: {
        "execution_id": event.execution_id,
        "device_ids": event.device_ids,
        "at": event.since,
    },
    "waiting",
)


def _run(event: TaskDue | ExecutionStarted | ExecutionCompleted) -> tuple[Hashable, ...]:
    return (("run", event.execution_id),)


def _results(
    event: DeviceResultRecorded | DeviceJobDispatched | DevicesWaiting,
) -> tuple[Hashable, ...]:
    # One key for all of a run's device rows: a run's progress and results never share a
    # wave, and its results fold (_results_many).
    return (("results", event.execution_id),)


_BATCHED: dict[type, Batched] = {
    TaskDue: Batched(keys=_run, write=_due_many),
    ExecutionStarted: Batched(
        keys=lambda event: (*_run(event), *_results(event)), write=_started_many
    ),
    # Its rows are new ones, never another event's: it folds, ON CONFLICT DO NOTHING.
    ExecutionTargetsAdded: Batched(keys=_results, write=_targets_many, folds=True),
    DeviceJobDispatched: Batched(keys=_results, write=_dispatched_many),
    DevicesWaiting: Batched(keys=_results, write=_waiting_many),
    DeviceResultRecorded: Batched(keys=_results, write=_results_many, folds=True),
    ExecutionCompleted: Batched(keys=_run, write=_completed_many),
}
