"""What executors and agents say to each other on deployx.agents.<device_id>.* subjects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

OUTPUT_LIMIT = 64 * 1024  # bytes of stdout and of stderr kept per job
# A device id is one NATS subject token (deployx.agents.<id>.jobs): no dots, spaces, wildcards.
DEVICE_ID_PATTERN = r"^[A-Za-z0-9_:\-]+$"


def jobs_subject(device_id: str) -> str:
    return f"deployx.agents.{device_id}.jobs"


def results_subject(device_id: str) -> str:
    return f"deployx.agents.{device_id}.results"


def heartbeat_subject(device_id: str) -> str:
    return f"deployx.agents.{device_id}.heartbeat"


def device_of(subject: str) -> str:
    """The device id in deployx.agents.<device_id>.<kind>: who sent it, as NATS enforces."""
    return subject.split(".")[2]


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """Work for one device. job_id is the same on every dispatch of the same run to the device."""

    job_id: str
    execution_id: str
    task_id: str
    task_type: str
    payload: dict[str, Any]
    timeout_seconds: int
    file_bucket: str | None = None


class JobReport(msgspec.Struct, frozen=True, kw_only=True):
    """An agent's word on a job: "accepted" when it starts, then "finished" with the result."""

    job_id: str
    state: str  # "accepted" | "finished"
    status: str | None = None  # "success" | "failed" | "timeout", when finished
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    details: dict[str, Any] = {}


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    hostname: str
    os: str
    agent_version: str
    labels: dict[str, str] = {}
    started_at: datetime
    sent_at: datetime
    interval_seconds: float


class JobOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What running a job produced, before it is wrapped in a finished JobReport."""

    status: str
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    details: dict[str, Any] = {}

    def report(self, job_id: str) -> JobReport:
        return JobReport(
            job_id=job_id,
            state="finished",
            status=self.status,
            exit_code=self.exit_code,
            stdout=self.stdout,
            stderr=self.stderr,
            error=self.error,
            details=self.details,
        )


FILES_BUCKET = "deployx-files"  # the JetStream Object Store bucket of POST /api/files
