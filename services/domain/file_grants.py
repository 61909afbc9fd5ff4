"""What a run lets its devices read from the file server, and until when.

A run hands its devices the upload its task names (a file deployment's file, a script) for as
long as any of its jobs may still be working: until the run's deadline, by which every job has
finished or timed out. After that, a device asking for the file again is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import msgspec

from events.execution import ExecutionStarted
from services.domain.execution import ACCEPT_TIMEOUT, RESULT_GRACE

# Runs started before ExecutionStarted carried a deadline ran one job per device, which no
# kind lets run longer than a day (timeout_seconds <= 86,400).
UNDATED_RUN = timedelta(days=1) + ACCEPT_TIMEOUT + RESULT_GRACE
NOT_DEPLOYED = "a file not deployed to this device by that job"
EXPIRED = "the job's grant to that file has expired (its run's deadline passed)"


class Grant(msgspec.Struct, frozen=True):
    """What an execution lets its devices read: the upload its task as fired names, if its kind
    has a file field (None: nothing), until expires_at."""

    file_id: str | None
    devices: frozenset[str]
    expires_at: datetime


def grant_of(
    started: ExecutionStarted, file_id: str | None, more_targets: Iterable[str] = ()
) -> Grant:
    """more_targets: the device ids of the run's ExecutionTargetsAdded, if it has any."""
    expires_at = started.deadline or started.started_at + UNDATED_RUN
    devices = frozenset((*started.device_ids, *more_targets))
    return Grant(file_id=file_id, devices=devices, expires_at=expires_at)


def refusal(grant: Grant | None, device_id: str, file_id: str, now: datetime) -> str | None:
    """Why device_id may not read file_id under the grant of the job it names (None: no such
    job of that device's) at now; None if it may."""
    if grant is None or device_id not in grant.devices or grant.file_id != file_id:
        return NOT_DEPLOYED
    if now >= grant.expires_at:
        return EXPIRED
    return None
