"""Fetches a job's file from the file server, a chunk at a time, on the device's own subject,
and checks it against the size and sha256 the object store recorded."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Awaitable, Callable
from typing import BinaryIO

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
from services.agent.protocol import JobOutcome
from services.infra.clock import Backoff

# One chunk (128 KiB by default) should come back in well under this; a server that died
# while answering is asked again, and another replica of its queue group answers.
REQUEST_TIMEOUT = 10.0
DIGEST_PREFIX = "SHA-256="
_encode = msgspec.json.Encoder().encode


class FileUnavailable(Exception):
    """The file server will not give this file: not this device's, or not (wholly) stored."""


class FetchFailed(Exception):
    """The job's file did not come whole; `outcome` is the job's answer saying so."""

    def __init__(self, status: str, error: str) -> None:
        super().__init__(error)
        self.outcome = JobOutcome(status=status, error=error)


class Fetched(msgspec.Struct, frozen=True):
    sha256: str  # hex
    size: int


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


async def fetch_verified(
    fetcher: FileFetcher, file_id: str, target: BinaryIO, timeout: float
) -> Fetched:
    """Writes the file into target (off the event loop) within timeout seconds, and checks its
    size and sha256; FetchFailed if it does not come whole."""
    writer = _HashingWriter(target)
    try:
        expected = await asyncio.wait_for(fetcher.download(file_id, writer.write), timeout)
    except TimeoutError:
        error = f"download of {file_id!r} timed out after {timeout:g} s"
        raise FetchFailed("timeout", error) from None
    except FileUnavailable as exc:
        raise FetchFailed("failed", str(exc)) from None
    except nats.errors.Error as exc:
        raise FetchFailed("failed", f"download of {file_id!r}: {exc!r}") from None
    if writer.size != expected.size:
        error = f"file {file_id!r}: {writer.size} bytes came, not {expected.size}"
        raise FetchFailed("failed", error)
    if _expected_sha256(expected.digest) != writer.sha256.digest():
        raise FetchFailed("failed", f"file {file_id!r}: sha256 mismatch")
    return Fetched(sha256=writer.sha256.hexdigest(), size=writer.size)


class _HashingWriter:
    """Where each chunk goes: the target file (written off the event loop) and a sha256."""

    def __init__(self, target: BinaryIO) -> None:
        self._target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self._target.write, data)
        self.sha256.update(data)
        self.size += len(data)


def _expected_sha256(digest: str | None) -> bytes | None:
    if not digest or not digest.upper().startswith(DIGEST_PREFIX):
        return None
    try:
        return base64.urlsafe_b64decode(digest[len(DIGEST_PREFIX) :])
    except ValueError:  # binascii.Error: a digest that is not base64 matches nothing
        return None
