"""What executors and agents say to each other on deployx.agents.<device_id>.* subjects."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

OUTPUT_LIMIT = 64 * 1024  # bytes of stdout and of stderr kept per job
ERROR_LIMIT = 4 * 1024  # bytes of a job's error message kept
TRUNCATED_MARKER = f"\n[... output truncated at {OUTPUT_LIMIT // 1024} KiB]"
# A device id is one NATS subject token (deployx.agents.<id>.jobs): no dots, spaces, wildcards.
DEVICE_ID_PATTERN = r"^[A-Za-z0-9_:\-]+$"
DEVICE_ID_MAX = 128
# What decoding a device's message may raise: msgspec gives up on deep nesting (of a field it
# would skip, say) with RecursionError, not DecodeError.
DECODE_ERRORS = (msgspec.DecodeError, RecursionError)
# What PostgreSQL's integer column and every exit code of a real process fit in.
INT32 = Meta(ge=-(2**31), le=2**31 - 1)


def jobs_subject(device_id: str) -> str:
    return f"deployx.agents.{device_id}.jobs"


def results_subject(device_id: str) -> str:
    return f"deployx.agents.{device_id}.results"


def heartbeat_subject(device_id: str) -> str:
    return f"deployx.agents.{device_id}.heartbeat"


def device_of(subject: str) -> str:
    """The device id in deployx.agents.<device_id>.<kind>: who sent it, as NATS enforces."""
    return subject.split(".")[2]


class Job(msgspec.Struct, frozen=True, kw_only=True, tag="run", tag_field="action"):
    """Work for one device. job_id is the same on every dispatch of the same run to the device.

    payload is the task kind's payload Struct (services/domain/kinds), encoded: the agent
    decodes it as task_type says, so a job of a kind it cannot run still gets an answer.
    """

    job_id: str
    execution_id: str
    task_id: str
    task_type: str
    payload: msgspec.Raw
    timeout_seconds: int
    file_bucket: str | None = None


class CancelJob(msgspec.Struct, frozen=True, kw_only=True, tag="cancel", tag_field="action"):
    """Stop that job: its whole process group gets SIGTERM, then SIGKILL after a grace; the
    agent reports it "canceled". A job not started yet never starts."""

    job_id: str


# What comes on deployx.agents.<device_id>.jobs.
AgentWork = Job | CancelJob

JobState = Literal["accepted", "finished"]
JobStatus = Literal["success", "failed", "timeout", "canceled"]
AwareTime = Annotated[datetime, Meta(tz=True)]


class JobReport(msgspec.Struct, frozen=True, kw_only=True):
    """An agent's word on a job: "accepted" when it starts, then "finished" with the result.

    Decoding checks types, enums and ranges (a device is not trusted); texts of any length are
    accepted here and cut to size with storable() by whoever stores them.
    """

    job_id: Annotated[str, Meta(max_length=256)]
    state: JobState
    status: JobStatus | None = None  # when finished
    exit_code: Annotated[int, INT32] | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    details: dict[str, Any] = {}


class JobReference(msgspec.Struct, frozen=True):
    """Just the job id of a report, read when the whole report does not decode: the run that
    sent the job can then record why its device failed instead of waiting for it in vain."""

    job_id: str


# What an agent may announce it can run. The shells are those of the command kind (a unit test
# keeps the two lists equal); package managers are drivers, which modules may add, so their
# names are bounded by shape rather than listed.
Shell = Literal["bash", "sh", "zsh", "python3", "pwsh", "powershell", "cmd"]
OsFamily = Literal["linux", "darwin", "windows", "freebsd", "other"]
PACKAGE_MANAGER_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
ARCH_PATTERN = r"^[a-z0-9_]{1,16}$"
MAX_LISTED = 16


# Heartbeats and what they carry are decoded by the hundred thousand (a fleet starting) and
# kept until written: gc=False leaves them out of the garbage collector's passes, which would
# otherwise cost more than decoding them. Safe, as nothing decoded from JSON forms a cycle.
class Capabilities(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """What a device can run, as its agent found it at start: shells and package managers on
    its PATH, its OS family and CPU architecture. Each list is short, sorted and unique."""

    shells: Annotated[list[Shell], Meta(max_length=MAX_LISTED)] = []
    package_managers: Annotated[
        list[Annotated[str, Meta(pattern=PACKAGE_MANAGER_PATTERN)]], Meta(max_length=MAX_LISTED)
    ] = []
    os: OsFamily = "other"
    arch: Annotated[str, Meta(pattern=ARCH_PATTERN)] = "unknown"

    def __post_init__(self) -> None:
        for name in ("shells", "package_managers"):
            items = getattr(self, name)
            if len(set(items)) != len(items):
                raise ValueError(f"{name} lists an item twice")


class BareHeartbeat(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A heartbeat without its capabilities: what the registry falls back to when only those
    are malformed, so that they are refused (and noted) while the device stays present."""

    device_id: Annotated[str, Meta(pattern=DEVICE_ID_PATTERN, max_length=DEVICE_ID_MAX)]
    hostname: Annotated[str, Meta(max_length=255)]
    os: Annotated[str, Meta(max_length=255)]
    agent_version: Annotated[str, Meta(max_length=64)]
    labels: Annotated[
        dict[Annotated[str, Meta(max_length=63)], Annotated[str, Meta(max_length=255)]],
        Meta(max_length=64),
    ] = {}
    started_at: AwareTime
    sent_at: AwareTime
    # Presence counts missed heartbeats in these; an absurd one would make a device look
    # online for ever (or, out of range of the column, fail every presence write).
    interval_seconds: Annotated[float, Meta(ge=0.5, le=3600)]


class Heartbeat(BareHeartbeat, frozen=True, kw_only=True):
    # None from an agent older than capabilities (it is sent whatever is asked, as before).
    capabilities: Capabilities | None = None


def storable(text: str, limit_bytes: int, marker: str = TRUNCATED_MARKER) -> str:
    """text as PostgreSQL can store it, in at most limit_bytes of UTF-8 (plus the marker).

    NUL, which a text column refuses, becomes U+FFFD; a lone surrogate, which UTF-8 cannot
    encode, becomes "?"; a text cut short ends with the marker.
    """
    data = text.replace("\x00", "\ufffd").encode("utf-8", errors="replace")
    if len(data) <= limit_bytes:
        return data.decode("utf-8")
    return data[:limit_bytes].decode("utf-8", errors="ignore") + marker


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
            status=self.status,  # type: ignore[arg-type]
            exit_code=self.exit_code,
            stdout=storable(self.stdout, OUTPUT_LIMIT),
            stderr=storable(self.stderr, OUTPUT_LIMIT),
            error=None if self.error is None else storable(self.error, ERROR_LIMIT, "…"),
            details=self.details,
        )


FILES_BUCKET = "deployx-files"  # the JetStream Object Store bucket of POST /api/files
