"""Who an execution runs on, the job it sends each, and which of those devices are online now."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from events.task import TaskCreated
from services.agent.protocol import FILES_BUCKET, Job
from services.domain.kinds import KINDS, stored_payload
from services.domain.task import TaskState, evolve
from services.domain.task_spec import unique
from services.infra.db import Db
from services.infra.store import read_stream

# An agent that missed this many heartbeats in a row counts as offline.
MISSED_HEARTBEATS = 3


async def task_as_fired(db: Db, task_id: str, due_version: int) -> TaskState:
    """The task as it stood when the TaskDue at due_version was appended."""
    state = TaskState(task_id=task_id)
    for recorded in await read_stream(db, task_id):
        if recorded.version > due_version:
            break
        state = evolve(state, recorded.event)
    return state


async def resolve_targets(db: Db, spec: TaskCreated) -> list[str]:
    """device_ids, then the members of group_ids at this moment; each device once."""
    members: list[str] = []
    if spec.group_ids:
        rows = await db.fetch(
            "SELECT device_ids FROM device_groups WHERE id = ANY ($1::int[]) ORDER BY id",
            spec.group_ids,
        )
        members = [device for row in rows for device in row["device_ids"]]
    return unique([*spec.device_ids, *members])


class Presence(msgspec.Struct, frozen=True):
    online: set[str]
    # When each device among those asked about was last heard from, online or not.
    last_seen: dict[str, datetime]


async def presence(db: Db, device_ids: list[str], now: datetime) -> Presence:
    """Which of device_ids have a heartbeating agent, and when each was last seen.

    Missed heartbeats count from the freshest one recorded of any device, not from `now`: while
    the database was away no heartbeat was recorded, and right after it is back every agent
    would otherwise look offline. (A device wrongly thought online is found out anyway: its
    agent does not accept the job in time.)
    """
    if not device_ids:
        return Presence(online=set(), last_seen={})
    rows = await db.fetch(
        "SELECT device_id, last_seen, interval_seconds, "
        "(SELECT max(last_seen) FROM device_presence) AS freshest FROM device_presence "
        "WHERE device_id = ANY ($1::text[])",
        device_ids,
    )
    online = {
        row["device_id"]
        for row in rows
        if min(now, row["freshest"]) - row["last_seen"]
        <= timedelta(seconds=row["interval_seconds"] * MISSED_HEARTBEATS)
    }
    return Presence(online=online, last_seen={row["device_id"]: row["last_seen"] for row in rows})


def job_timeout(spec: TaskCreated) -> int:
    return stored_payload(spec.task_type, spec.task_payload).timeout_seconds


def job_for(spec: TaskCreated, job_id: str, execution_id: str) -> Job:
    """The job of one device: the task's payload as its kind's Struct, for the agent to decode."""
    payload = stored_payload(spec.task_type, spec.task_payload)
    return Job(
        job_id=job_id,
        execution_id=execution_id,
        task_id=spec.task_id,
        task_type=spec.task_type,
        payload=msgspec.Raw(msgspec.json.encode(payload)),
        timeout_seconds=payload.timeout_seconds,
        file_bucket=FILES_BUCKET if KINDS[spec.task_type].file_field is not None else None,
    )
