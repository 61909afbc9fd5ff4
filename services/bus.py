"""Connecting to NATS: reconnect forever, and say so in the logs when it drops."""

from __future__ import annotations

import nats
import nats.aio.client
import structlog

log = structlog.get_logger("deployx.bus")


async def connect_nats(url: str, name: str) -> nats.aio.client.Client:
    async def report(exc: Exception) -> None:
        log.warning("nats_error", client=name, error=str(exc))

    return await nats.connect(servers(url), name=name, max_reconnect_attempts=-1, error_cb=report)


def servers(url: str) -> list[str]:
    """A cluster is given as comma-separated URLs; the client fails over between them."""
    return [part.strip() for part in url.split(",") if part.strip()]
