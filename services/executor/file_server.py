"""Streams uploads to agents, chunk by chunk, only for jobs sent to the asking device whose
task's kind hands its devices that file (a file deployment's file, a script), until the job's
run is past its deadline, and at a bounded rate per device."""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from typing import TypeVar

import msgspec
import nats.aio.client
import nats.aio.msg
import nats.aio.subscription
import structlog
from nats.js.api import ObjectInfo
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore
from prometheus_client import Counter

from events.codec import decode_data
from events.execution import ExecutionStarted, ExecutionTargetsAdded
from services.agent.file_protocol import (
    ALL_FILE_REQUESTS,
    CHUNKS,
    DIGEST,
    FILE_SERVER_QUEUE,
    SEQUENCE,
    SIZE,
    STATUS,
    ChunkRequest,
    Status,
)
from services.agent.protocol import DECODE_ERRORS, FILES_BUCKET, device_of
from services.domain.file_grants import Grant, grant_of, refusal
from services.domain.kinds import file_id_of
from services.engine.run_sources import source_of
from services.infra.bus import NATS_UNAVAILABLE
from services.infra.clock import Clock, SystemClock
from services.infra.db import UNAVAILABLE, Db, describe
from services.infra.nats_auth import agent_inbox_prefix
from services.infra.rate_limit import TokenBuckets
from services.infra.rejections import Rejections
from services.infra.settings import Settings

log = structlog.get_logger("deployx.files")
_request = msgspec.json.Decoder(ChunkRequest)
REQUESTS = Counter(
    "deployx_file_requests_total",
    "Agents' file chunk requests, by answer (dropped: a reply subject not the agent's inbox; "
    "limited: over the device's rate, answered unavailable)",
    ["outcome"],
)
PARALLEL = 32  # requests answered at once by one server
# Requests within their devices' rates waiting for one of the PARALLEL slots; past this many,
# a request is told "unavailable" at once: the intake's callback never waits.
WAITING = 4096
# A device over its rate is told "unavailable" at most this often (seconds): an agent pauses
# at least 0.2 s after being told so (file_fetch), and a flood's every request answered would
# cost a publish each.
TOLD_EVERY = 0.1
# Chunk requests one device may make of one server (DEPLOYX_FILE_REQUESTS_PER_SECOND and
# _BURST): over it, the agent is told "unavailable" and asks again after a pause (file_fetch).
_DEFAULTS = Settings()
TOO_MANY = "too many file requests: over the device's rate limit"
CACHED = 4096  # executions (and objects) whose facts are kept in memory
K = TypeVar("K")
V = TypeVar("V")

# The run's start (which lists its devices) and the rest of its targets, wherever they lie in
# the stream: after a request or a cancel that came first.
_STARTED = (
    "SELECT type, schema_version, data::text FROM events WHERE stream_id = $1 "
    "AND type IN ('ExecutionStarted', 'ExecutionTargetsAdded') ORDER BY version"
)


class FileServer:
    """Answers ChunkRequests on every agent's files subject, in a queue group of all replicas."""

    def __init__(
        self,
        db: Db,
        client: nats.aio.client.Client,
        rejections: Rejections,
        bucket: str = FILES_BUCKET,
        *,
        clock: Clock | None = None,
        limits: TokenBuckets | None = None,
        intake: nats.aio.client.Client | None = None,
    ) -> None:
        self._db, self._nc, self._bucket = db, client, bucket
        # Where requests arrive: best a connection of their own, so that a device flooding
        # them delays nothing else of the process (its JetStream reads, its replies, and an
        # executor's fetches and results all go through `client`).
        self._intake = intake or client
        self._rejections = rejections
        self._clock = clock or SystemClock()
        self._limits = limits or TokenBuckets(
            _DEFAULTS.file_requests_per_second, _DEFAULTS.file_requests_burst
        )
        self._js = client.jetstream()
        self._store: ObjectStore | None = None
        # An execution's targets, task and deadline never change once it started: safe to keep.
        self._grants: OrderedDict[str, Grant] = OrderedDict()
        self._objects: OrderedDict[str, ObjectInfo] = OrderedDict()
        self._slots = asyncio.Semaphore(PARALLEL)
        self._waiting = 0
        self._told: OrderedDict[str, float] = OrderedDict()  # device -> last told "unavailable"
        self._answering: set[asyncio.Task[None]] = set()
        self._subscription: nats.aio.subscription.Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self._intake.subscribe(
            ALL_FILE_REQUESTS, queue=FILE_SERVER_QUEUE, cb=self._on_request
        )

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
        if self._answering:
            _, late = await asyncio.wait(self._answering, timeout=10)
            for task in late:  # still waiting for a slot: their agents ask again, elsewhere
                task.cancel()
            if late:
                await asyncio.wait(late)

    async def _on_request(self, msg: nats.aio.msg.Msg) -> None:
        # Never waits for anything but a publish: a callback held up holds up the whole
        # subscription, every device's requests behind the one it holds.
        device = device_of(msg.subject)
        # Only to the asking agent's own inbox: a reply subject is the sender's choice, and
        # another device's jobs subject would have us deliver to it.
        to_inbox = msg.reply.startswith(f"{agent_inbox_prefix(device)}.")
        # Before anything else: a flooding device's surplus costs a count, and an answer
        # every TOLD_EVERY, and leaves the slots below to everyone else.
        now = time.monotonic()
        if not self._limits.take(device, now):
            self._rejections.note(device, "file_request", TOO_MANY, msg.data)
            REQUESTS.labels("limited").inc()
            if to_inbox and now - self._told.get(device, -math.inf) >= TOLD_EVERY:
                _remember(self._told, device, now)
                await self._nc.publish(msg.reply, b"", headers={STATUS: "unavailable"})
            return
        if not to_inbox:
            log.warning("file_request_dropped", device_id=device, reply=msg.reply[:200])
            REQUESTS.labels("dropped").inc()
            return
        if self._waiting >= WAITING:
            await self._reply(msg.reply, "unavailable")
            return
        self._waiting += 1
        task = asyncio.create_task(self._answer_in_turn(msg, device))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer_in_turn(self, msg: nats.aio.msg.Msg, device: str) -> None:
        waiting = True
        try:
            async with self._slots:  # in arrival order
                self._waiting, waiting = self._waiting - 1, False
                await self._answer(msg, device)
        finally:
            if waiting:  # cancelled (the server stopping) before its turn came
                self._waiting -= 1

    async def _answer(self, msg: nats.aio.msg.Msg, device: str) -> None:
        try:
            request = _request.decode(msg.data)
        except DECODE_ERRORS as exc:
            self._rejections.note(device, "file_request", str(exc) or type(exc).__name__, msg.data)
            await self._reply(msg.reply, "refused")
            return
        try:
            await self._serve(msg.reply, device, request)
        except (*UNAVAILABLE, *NATS_UNAVAILABLE) as exc:
            log.warning("file_request_failed", device_id=device, error=describe(exc))
            await self._reply(msg.reply, "unavailable")
        except Exception:
            log.exception("file_request_failed", device_id=device, job_id=request.job_id)
            await self._reply(msg.reply, "unavailable")

    async def _serve(self, reply: str, device: str, request: ChunkRequest) -> None:
        grant = await self._grant(request.job_id, device)
        reason = refusal(grant, device, request.file_id, self._clock.now())
        if reason is not None:
            self._rejections.note(device, "file_request", reason, msgspec.json.encode(request))
            await self._reply(reply, "refused")
            return
        info = await self._object(request.file_id)
        if info is None:
            await self._reply(reply, "missing")
            return
        about = {
            SIZE: str(info.size or 0),
            CHUNKS: str(info.chunks or 0),
            DIGEST: info.digest or "",
        }
        if not info.chunks:
            await self._reply(reply, "ok", {**about, SEQUENCE: "0"})
            return
        try:
            chunk = await self._js.get_msg(
                f"OBJ_{self._bucket}",
                seq=request.after + 1,
                subject=f"$O.{self._bucket}.C.{info.nuid}",
                next=True,
            )
        except NotFoundError:  # the object is recorded, its chunks are gone
            await self._reply(reply, "missing", about)
            return
        await self._reply(reply, "ok", {**about, SEQUENCE: str(chunk.seq)}, chunk.data or b"")

    async def _reply(
        self, reply: str, status: Status, headers: dict[str, str] | None = None, data: bytes = b""
    ) -> None:
        await self._nc.publish(reply, data, headers={STATUS: status, **(headers or {})})
        REQUESTS.labels(status).inc()

    async def _grant(self, job_id: str, device: str) -> Grant | None:
        """The grant of the job's execution; None if the job id is not one of this device's."""
        suffix = f":{device}"
        if not job_id.endswith(suffix):
            return None
        execution_id = job_id.removesuffix(suffix)
        grant = self._grants.get(execution_id)
        if grant is not None:
            self._grants.move_to_end(execution_id)
        else:
            grant = await self._load_grant(execution_id)
            if grant is None:
                return None  # not kept: anyone may make up ids, and they must not evict
            _remember(self._grants, execution_id, grant)
        return grant

    async def _load_grant(self, execution_id: str) -> Grant | None:
        rows = await self._db.fetch(_STARTED, execution_id)
        if not rows:
            return None
        started, *added = (
            decode_data(row["type"], row["data"], row["schema_version"]) for row in rows
        )
        assert isinstance(started, ExecutionStarted)
        more = [
            d
            for event in added
            if isinstance(event, ExecutionTargetsAdded)
            for d in event.device_ids
        ]
        source = await source_of(self._db, execution_id)
        if source is None:
            return grant_of(started, None, more)
        return grant_of(started, file_id_of(source.task_type, source.task_payload), more)

    async def _object(self, file_id: str) -> ObjectInfo | None:
        """The object's info (its chunks' subject, size, digest); None if it is not stored."""
        info = self._objects.get(file_id)
        if info is not None:
            return info
        try:
            if self._store is None:
                self._store = await self._js.object_store(self._bucket)
            info = await self._store.get_info(file_id)
        except (BucketNotFoundError, ObjectNotFoundError):
            return None
        if info.is_link() or not info.nuid:
            log.warning("file_not_servable", file_id=file_id, reason="a link, not an object")
            return None
        # An object's name is a fresh uuid per upload and never rewritten: safe to keep.
        _remember(self._objects, file_id, info)
        return info


def _remember(cache: OrderedDict[K, V], key: K, value: V) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > CACHED:
        cache.popitem(last=False)
