"""Fetches a job's file from the file server, a chunk at a time, on the device's own subject."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import msgspec
import nats.aio.client
import nats.aio.msg
import nats.errors

from services.agent.file_protocol import (
    CHUNKS,
    DIGEST,
    SEQUENCE,
    SIZE,
    STATUS,
    ChunkRequest,
    files_subject,
)
from services.infra.clock import Backoff

# One chunk (128 KiB by default) should come back in well under this; a server that died
# while answering is asked again, and another replica of its queue group answers.
REQUEST_TIMEOUT = 10.0
_encode = msgspec.json.Encoder().encode


class FileUnavailable(Exception):
    """The file server will not give this file: not this device's, or not (wholly) stored."""


class Expected(msgspec.Struct, frozen=True):
    """What the object store recorded of the file, to check the downloaded bytes against."""

    size: int
    chunks: int
    digest: str


class FileFetcher:
    """A job's file as the file server hands it out: to this device, for this job, only."""

    def __init__(self, client: nats.aio.client.Client, device_id: str, job_id: str) -> None:
        self._nc, self._device_id, self._job_id = client, device_id, job_id

    async def download(self, file_id: str, write: Callable[[bytes], Awaitable[object]]) -> Expected:
        """Passes each chunk to write, in order; returns what the store says the file is."""
        expected: Expected | None = None
        after = received = 0
        while True:
            reply = await self._ask(ChunkRequest(job_id=self._job_id, file_id=file_id, after=after))
            headers = reply.headers or {}
            status = headers.get(STATUS)
            if status == "refused":
                raise FileUnavailable(f"file {file_id!r} is not available to this device")
            if status == "missing" and SIZE not in headers:
                raise FileUnavailable(f"file {file_id!r} is not in the object store")
            if status == "missing":  # recorded, but chunks are gone
                raise FileUnavailable(f"file {file_id!r} is incomplete in the object store")
            try:
                if expected is None:
                    expected = Expected(
                        size=int(headers[SIZE]), chunks=int(headers[CHUNKS]), digest=headers[DIGEST]
                    )
                if received >= expected.chunks:
                    return expected
                after = int(headers[SEQUENCE])
            except (KeyError, ValueError):
                raise FileUnavailable(
                    f"file {file_id!r}: the file server's reply is malformed"
                ) from None
            await write(reply.data)
            received += 1
            if received >= expected.chunks:
                return expected

    async def _ask(self, request: ChunkRequest) -> nats.aio.msg.Msg:
        """The file server's answer; asks again while none is running or it cannot tell yet
        (the caller's timeout bounds how long)."""
        retry = Backoff(first=0.2, limit=5.0)
        data = _encode(request)
        while True:
            try:
                reply = await self._nc.request(
                    files_subject(self._device_id), data, timeout=REQUEST_TIMEOUT
                )
            except (
                nats.errors.NoRespondersError,
                nats.errors.TimeoutError,
                nats.errors.ConnectionReconnectingError,
            ):
                reply = None
            if reply is not None and (reply.headers or {}).get(STATUS) != "unavailable":
                return reply
            await asyncio.sleep(retry.next())
