"""What a run lets its devices read from the file server, and until when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from events.execution import ExecutionStarted
from services.domain.file_grants import (
    EXPIRED,
    NOT_DEPLOYED,
    UNDATED_RUN,
    grant_of,
    refusal,
)

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def started(deadline: datetime | None) -> ExecutionStarted:
    return ExecutionStarted(
        execution_id="run-1",
        task_id="task-1",
        trigger="manual",
        scheduled_for=T0,
        started_at=T0,
        device_ids=["dev-a", "dev-b"],
        deadline=deadline,
    )


def test_a_targeted_device_reads_its_runs_file_until_the_runs_deadline() -> None:
    grant = grant_of(started(T0 + timedelta(minutes=11)), "file-1")
    assert grant.expires_at == T0 + timedelta(minutes=11)
    assert refusal(grant, "dev-a", "file-1", T0) is None
    assert refusal(grant, "dev-b", "file-1", grant.expires_at - SECOND) is None
    assert refusal(grant, "dev-a", "file-1", grant.expires_at) == EXPIRED
    assert refusal(grant, "dev-a", "file-1", grant.expires_at + timedelta(days=30)) == EXPIRED


def test_a_run_started_before_deadlines_were_recorded_grants_a_days_job_and_its_margins() -> None:
    grant = grant_of(started(None), "file-1")
    assert grant.expires_at == T0 + UNDATED_RUN
    assert refusal(grant, "dev-a", "file-1", T0 + timedelta(hours=23)) is None
    assert refusal(grant, "dev-a", "file-1", T0 + timedelta(hours=25)) == EXPIRED


def test_another_device_another_file_a_run_without_one_or_no_run_at_all_are_refused() -> None:
    grant = grant_of(started(T0 + timedelta(hours=1)), "file-1")
    assert refusal(grant, "dev-c", "file-1", T0) == NOT_DEPLOYED
    assert refusal(grant, "dev-a", "file-2", T0) == NOT_DEPLOYED
    assert refusal(grant_of(started(None), None), "dev-a", "file-1", T0) == NOT_DEPLOYED
    assert refusal(None, "dev-a", "file-1", T0) == NOT_DEPLOYED
