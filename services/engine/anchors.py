"""Anchors: the audit chain's head, published on NATS now and then, to be kept elsewhere."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from services.infra import audit_store
from services.infra.bus import NATS_UNAVAILABLE
from services.infra.clock import wait_first
from services.infra.db import UNAVAILABLE, Db, describe

log = structlog.get_logger("deployx.anchors")

SUBJECT = "deployx.audit.anchors"
STREAM = "DEPLOYX_AUDIT"
# Anchors are few (one a minute at most) and their worth is in being old: keep them long.
MAX_AGE = timedelta(days=400)


class Anchor(msgspec.Struct, frozen=True, kw_only=True):
    """The chain's hash after the event at position (seal seq): what verify --anchor takes."""

    seq: int
    position: int
    hash: str
    sealed_at: datetime
    published_at: datetime


async def ensure_anchor_stream(js: JetStreamContext, replicas: int = 1) -> None:
    config = StreamConfig(
        name=STREAM,
        description="The DeployX audit chain's head, now and then: proof against rewrites",
        subjects=[SUBJECT],
        storage=StorageType.FILE,
        num_replicas=replicas,
        max_age=MAX_AGE.total_seconds(),
        duplicate_window=600.0,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)


async def current_anchor(db: Db) -> Anchor | None:
    head = await audit_store.head(db)
    if head.position is None or head.sealed_at is None:
        return None
    return Anchor(
        seq=head.seq,
        position=head.position,
        hash=head.hash.hex(),
        sealed_at=head.sealed_at,
        published_at=datetime.now(UTC),
    )


async def publish_anchors(
    pool: asyncpg.Pool,
    js: JetStreamContext,
    stop: asyncio.Event,
    every: float,
    replicas: int = 1,
) -> None:
    """Publishes the head every `every` seconds when it moved; replicas' repeats are dropped
    by the stream (the message id is the seal's seq)."""
    published, stream_ready = 0, False
    while not stop.is_set():
        try:
            if not stream_ready:
                await ensure_anchor_stream(js, replicas)
                stream_ready = True
            anchor = await current_anchor(pool)
            if anchor is not None and anchor.seq != published:
                await js.publish(
                    SUBJECT,
                    msgspec.json.encode(anchor),
                    headers={"Nats-Msg-Id": f"anchor-{anchor.seq}"},
                )
                published = anchor.seq
                log.info("anchor_published", seq=anchor.seq, position=anchor.position)
        except (*UNAVAILABLE, *NATS_UNAVAILABLE) as exc:
            log.warning("anchor_failed", error=describe(exc))
        await wait_first(stop, timeout=every)


async def latest_published(js: JetStreamContext) -> Anchor | None:
    try:
        message = await js.get_last_msg(STREAM, SUBJECT)
    except NotFoundError:
        return None
    return msgspec.json.decode(message.data or b"", type=Anchor)
