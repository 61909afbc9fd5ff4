"""Connecting to NATS: reconnect forever, and say so in the logs when it drops."""

from __future__ import annotations

import ssl

import nats
import nats.aio.client
import nats.errors
import nats.js.errors
import structlog

log = structlog.get_logger("deployx.bus")

# What NATS raises while a server is away or restarting, or while JetStream elects a new
# leader for a stream or consumer (seconds on a cluster that lost a node): retried, not a bug.
NATS_UNAVAILABLE: tuple[type[Exception], ...] = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.StaleConnectionError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
)


async def connect_nats(url: str, name: str, ca_file: str | None = None) -> nats.aio.client.Client:
    """ca_file (DEPLOYX_NATS_CA): the CA that signed the servers' TLS certificates; with it the
    connection is TLS whatever the URL's scheme. tls:// URLs without it trust the system's CAs."""

    async def report(exc: Exception) -> None:
        log.warning("nats_error", client=name, error=str(exc))

    tls = ssl.create_default_context(cafile=ca_file) if ca_file else None
    return await nats.connect(
        servers(url), name=name, max_reconnect_attempts=-1, error_cb=report, tls=tls
    )


def servers(url: str) -> list[str]:
    """A cluster is given as comma-separated URLs; the client fails over between them."""
    return [part.strip() for part in url.split(",") if part.strip()]
