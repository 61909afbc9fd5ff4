"""Who an execution runs on, the job it sends each, and which of those devices are online now."""

from __future__ import annotations

from datetime import datetime

import msgspec

from services.agent.protocol import FILES_BUCKET, Job
from services.domain.execution import Presence
from services.domain.kinds import KINDS, stored_payload
from services.domain.task_spec import unique
from services.executor.spec import RunSpec
from services.infra.db import Db

# An agent that missed this many heartbeats in a row counts as offline.
MISSED_HEARTBEATS = 3

# Missed heartbeats count up to the last moment a registry was hearing (NATS connected,
# presence written), not up to now: while the database or the registry was away no
# heartbeat was recorded, and a device must not look offline for that.
_PRESENCE = """
SELECT p.device_id, p.last_seen,
    p.last_seen >= least($2::timestamptz, coalesce(h.at, $2::timestamptz))
        - make_interval(secs => p.interval_seconds * $3) AS online
FROM device_presence p LEFT JOIN (SELECT max(at) AS at FROM registry_heard) h ON true
WHERE p.device_id = ANY ($1::text[])
"""


async def resolve_targets(db: Db, device_ids: list[str], group_ids: list[int]) -> list[str]:
    """device_ids, then the members of group_ids at this moment; each device once."""
    members: list[str] = []
    if group_ids:
        rows = await db.fetch(
            "SELECT device_ids FROM device_groups WHERE id = ANY ($1::int[]) ORDER BY id",
            group_ids,
        )
        members = [device for row in rows for device in row["device_ids"]]
    return unique([*device_ids, *members])


async def presence(db: Db, device_ids: list[str], now: datetime) -> Presence:
    """Which of device_ids have a heartbeating agent, and when each was last seen."""
    if not device_ids:
        return Presence(online=frozenset())
    rows = await db.fetch(_PRESENCE, device_ids, now, MISSED_HEARTBEATS)
    return Presence(
        online=frozenset(row["device_id"] for row in rows if row["online"]),
        last_seen={row["device_id"]: row["last_seen"] for row in rows},
    )


def job_for(spec: RunSpec, job_id: str, execution_id: str) -> Job:
    """The job of one device: the run's payload as its kind's Struct, for the agent to decode."""
    payload = stored_payload(spec.task_type, spec.task_payload)
    return Job(
        job_id=job_id,
        execution_id=execution_id,
        task_id=spec.task_id or "",
        task_type=spec.task_type,
        payload=msgspec.Raw(msgspec.json.encode(payload)),
        timeout_seconds=payload.timeout_seconds,
        file_bucket=FILES_BUCKET if KINDS[spec.task_type].file_field is not None else None,
    )
