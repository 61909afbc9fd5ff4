"""Settings: one frozen Struct, read from the environment once, in the entry point."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

import msgspec
from msgspec import Meta


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str = "postgresql://postgres@127.0.0.1:5432/deployx"
    nats_url: str = "nats://127.0.0.1:4222"
    # A CA file to verify NATS servers' TLS certificates with (tls:// URLs); None: the system's.
    nats_ca: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    # PEM files: with both set the API serves HTTPS only.
    tls_cert: str | None = None
    tls_key: str | None = None
    log_format: str = "auto"  # "json" | "console" | "auto" (console on a TTY)
    log_level: str = "info"
    max_body_bytes: int = 1024 * 1024
    # Bytes of uploaded files (POST /api/files) each user may have stored, all files together.
    files_quota_bytes: int = 10 * 1024**3
    # How long a write waits for the read tables to show it before answering 503.
    read_your_writes_timeout: float = 10.0
    db_pool_max: int = 20
    # Where the relay's leader lock and every LISTEN connect: PostgreSQL itself (or a pooler in
    # session mode) when database_url is a pooler in transaction mode (docs/operations.md).
    database_session_url: str | None = None
    # asyncpg's prepared statements kept per connection: 0 behind PgBouncer in transaction mode.
    db_statement_cache_size: int = 100
    # A relay leader silent this long (hung, or cut off from PostgreSQL) loses its lock: its
    # session is ended by the server (idle_session_timeout, PostgreSQL 14 and newer).
    relay_lease_seconds: float = 30.0
    # Seconds an executor's TaskDue may go unacknowledged before JetStream hands it to another
    # replica: how long an execution waits to be resumed after its executor died. Read when
    # the durable consumer is created (by the first executor of a task type to start).
    executor_ack_wait: float = 60.0
    # Replicas of the DEPLOYX_EVENTS stream and the files bucket: 3 on a NATS cluster.
    stream_replicas: int = 1
    # When set, every service answers GET /healthz and /readyz on this port (Kubernetes probes).
    health_port: int | None = None
    # A reader of the log (projection, relay) whose next event has waited longer than this is
    # reported stuck by /readyz.
    stuck_after_seconds: float = 60.0
    # Webhooks (docs/webhooks.md): seconds a request may take, how long a delivery is retried
    # (at least a day by the contract), the first pause between tries and the longest.
    webhook_timeout_seconds: float = 10.0
    webhook_retry_seconds: float = 86_400.0
    webhook_first_retry_seconds: float = 1.0
    webhook_max_retry_seconds: float = 3600.0
    # Requests in flight per sender process, all subscriptions together and for one.
    webhook_concurrency: int = 128
    webhook_per_subscription: int = 8
    # How often the sealer publishes the audit chain's head on NATS (docs/audit.md).
    audit_anchor_seconds: float = 60.0
    # File chunk requests one device may make of one file server: a sustained rate and a burst
    # (docs/security.md); over it, the device is told to ask again later.
    file_requests_per_second: Annotated[float, Meta(gt=0)] = 250.0
    file_requests_burst: Annotated[int, Meta(ge=1)] = 500
    # Device ids one execution event lists at most: a run with more targets records them in
    # several events (ExecutionStarted, then ExecutionTargetsAdded), its jobs likewise. At most
    # 3,500: ids of 128 characters must still fit an event (services/domain/execution.py).
    devices_per_event: Annotated[int, Meta(ge=1, le=3500)] = 2000
    # How an executor paces a run's jobs (services/executor/run.py, Pacing): slices of this
    # many, waiting once this many recent jobs are unanswered; a job is recent this long.
    executor_publish_slice: Annotated[int, Meta(ge=1)] = 500
    executor_jobs_in_flight: Annotated[int, Meta(ge=0)] = 50_000
    executor_pace_seconds: Annotated[float, Meta(gt=0)] = 1.0

    @property
    def session_url(self) -> str:
        """The database for session-level features: the leader lock, LISTEN, migrations."""
        return self.database_session_url or self.database_url


_ENV = {
    "database_url": "DEPLOYX_DATABASE_URL",
    "nats_url": "DEPLOYX_NATS_URL",
    "nats_ca": "DEPLOYX_NATS_CA",
    "host": "DEPLOYX_HOST",
    "port": "DEPLOYX_PORT",
    "tls_cert": "DEPLOYX_TLS_CERT",
    "tls_key": "DEPLOYX_TLS_KEY",
    "log_format": "DEPLOYX_LOG_FORMAT",
    "log_level": "DEPLOYX_LOG_LEVEL",
    "max_body_bytes": "DEPLOYX_MAX_BODY_BYTES",
    "files_quota_bytes": "DEPLOYX_FILES_QUOTA_BYTES",
    "read_your_writes_timeout": "DEPLOYX_READ_YOUR_WRITES_TIMEOUT",
    "db_pool_max": "DEPLOYX_DB_POOL_MAX",
    "database_session_url": "DEPLOYX_DATABASE_SESSION_URL",
    "db_statement_cache_size": "DEPLOYX_DB_STATEMENT_CACHE_SIZE",
    "relay_lease_seconds": "DEPLOYX_RELAY_LEASE_SECONDS",
    "executor_ack_wait": "DEPLOYX_EXECUTOR_ACK_WAIT",
    "stream_replicas": "DEPLOYX_STREAM_REPLICAS",
    "health_port": "DEPLOYX_HEALTH_PORT",
    "stuck_after_seconds": "DEPLOYX_STUCK_AFTER_SECONDS",
    "webhook_timeout_seconds": "DEPLOYX_WEBHOOK_TIMEOUT_SECONDS",
    "webhook_retry_seconds": "DEPLOYX_WEBHOOK_RETRY_SECONDS",
    "webhook_first_retry_seconds": "DEPLOYX_WEBHOOK_FIRST_RETRY_SECONDS",
    "webhook_max_retry_seconds": "DEPLOYX_WEBHOOK_MAX_RETRY_SECONDS",
    "webhook_concurrency": "DEPLOYX_WEBHOOK_CONCURRENCY",
    "webhook_per_subscription": "DEPLOYX_WEBHOOK_PER_SUBSCRIPTION",
    "audit_anchor_seconds": "DEPLOYX_AUDIT_ANCHOR_SECONDS",
    "file_requests_per_second": "DEPLOYX_FILE_REQUESTS_PER_SECOND",
    "file_requests_burst": "DEPLOYX_FILE_REQUESTS_BURST",
    "devices_per_event": "DEPLOYX_DEVICES_PER_EVENT",
    "executor_publish_slice": "DEPLOYX_EXECUTOR_PUBLISH_SLICE",
    "executor_jobs_in_flight": "DEPLOYX_EXECUTOR_JOBS_IN_FLIGHT",
    "executor_pace_seconds": "DEPLOYX_EXECUTOR_PACE_SECONDS",
}


# Every variable a DeployX process reads its settings from: an agent drops them all before it
# runs a job, whatever it was started with.
SETTING_VARIABLES = frozenset(_ENV.values())


def from_env(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from DEPLOYX_* variables; keyword overrides (e.g. from CLI flags) win."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {
        field: environ[name] for field, name in _ENV.items() if name in environ
    }
    values.update({key: value for key, value in overrides.items() if value is not None})
    return msgspec.convert(values, Settings, strict=False)
