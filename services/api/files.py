"""POST /api/files: a file for file deployments, streamed into the JetStream Object Store."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import tempfile
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from io import BufferedRandom
from typing import IO

import msgspec
from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import BadHttpMessage
from nats.js.api import ObjectMeta, ObjectStoreConfig
from nats.js.errors import BucketNotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from services.agent.protocol import FILES_BUCKET
from services.api import file_quota
from services.api.keys import NATS, POOL, SETTINGS
from services.api.responses import ApiError, json_response
from services.api.writes import writer
from services.domain.errors import NotFound, ValidationFailed
from services.domain.payload_rules import check_file_id

MAX_FILE_BYTES = 1024**3
CHUNK = 256 * 1024
# Form fields after the file part are read to the closing boundary, and thrown away.
MAX_TRAILING_BYTES = 64 * 1024
routes = web.RouteTableDef()


class StoredFile(msgspec.Struct):
    file_id: str
    sha256: str
    size: int
    name: str


@routes.post("/api/files")
async def upload(request: web.Request) -> web.Response:
    """Takes the file as the raw body, or as the first part of a multipart form."""
    user = writer(request).user
    pool, quota = request.app[POOL], request.app[SETTINGS].files_quota_bytes
    room = min(MAX_FILE_BYTES, quota - await file_quota.used_bytes(pool, user))
    name = request.query.get("name", "")
    form: MultipartReader | None = None
    chunks: AsyncIterator[bytes]
    if request.content_type.startswith("multipart/"):
        form, part = await _first_part(request)
        name = name or part.filename or ""
        chunks = _part_chunks(form, part)
    else:
        if request.content_length is not None and request.content_length > room:
            await _refuse(request, user, request.content_length, at_least=False)
        chunks = request.content.iter_chunked(CHUNK)
    with tempfile.TemporaryFile() as spool:
        try:
            digest, size = await _spool(chunks, spool, room)
        finally:
            if isinstance(chunks, AsyncGenerator):
                await chunks.aclose()  # a multipart body refused before its end
        if size > room:
            await _refuse(request, user, size, at_least=True)
        if size == 0:
            raise ApiError(400, "malformed_body", "the file is empty")
        file_id = str(uuid.uuid4())
        await file_quota.reserve(pool, user, size, quota)
        try:
            spool.seek(0)
            await _store(request, file_id, spool, name)
        except BaseException:
            await file_quota.release(pool, user, size)
            raise
    return json_response(StoredFile(file_id=file_id, sha256=digest, size=size, name=name), 201)


async def _refuse(request: web.Request, user: str, size: int, *, at_least: bool) -> None:
    """Over 1 GiB, or over what is left of the user's quota: 413 before anything is stored."""
    if size > MAX_FILE_BYTES:
        raise ApiError(413, "body_too_large", "a file may be at most 1 GiB")
    used = await file_quota.used_bytes(request.app[POOL], user)
    quota = request.app[SETTINGS].files_quota_bytes
    raise file_quota.QuotaExceeded(quota, used, size, at_least=at_least)


async def _first_part(request: web.Request) -> tuple[MultipartReader, BodyPartReader]:
    try:
        form = await request.multipart()
        part = await form.next()
    except (BadHttpMessage, ValueError) as exc:  # no boundary, or a part's headers are broken
        raise _malformed(str(exc)) from None
    if not isinstance(part, BodyPartReader):
        raise ApiError(400, "malformed_body", "the multipart body has no file part")
    return form, part


async def _part_chunks(form: MultipartReader, part: BodyPartReader) -> AsyncIterator[bytes]:
    """The file part's bytes; then the rest of the form, which must end in its closing
    boundary: a body cut short (a client gone mid-upload) is not a whole file."""
    try:
        while chunk := await part.read_chunk(CHUNK):
            yield chunk
        if not part.at_eof():
            raise _malformed("the file part ends before its boundary")
        budget = MAX_TRAILING_BYTES
        while (field := await form.next()) is not None:
            while isinstance(field, BodyPartReader) and (chunk := await field.read_chunk(CHUNK)):
                budget -= len(chunk)
                if budget < 0:
                    raise _malformed(f"the fields after the file exceed {MAX_TRAILING_BYTES} bytes")
            if not isinstance(field, BodyPartReader) or not field.at_eof():
                raise _malformed("a part after the file is cut short or nested")
        if not form.at_eof():
            raise _malformed("the body ends before the closing boundary")
    except (BadHttpMessage, ValueError) as exc:  # a boundary where none fits, data past the end
        raise _malformed(str(exc)) from None


def _malformed(reason: str) -> ApiError:
    return ApiError(400, "malformed_body", f"the multipart body is malformed: {reason}")


async def _spool(chunks: AsyncIterator[bytes], spool: IO[bytes], room: int) -> tuple[str, int]:
    """Copies the upload to disk (never whole in memory), hashing it on the way; stops as soon
    as it is larger than `room`."""
    digest, size = hashlib.sha256(), 0
    async for chunk in chunks:
        size += len(chunk)
        if size > room:
            break
        digest.update(chunk)
        await asyncio.to_thread(spool.write, chunk)
    return digest.hexdigest(), size


@routes.get("/api/files/{id}")
async def describe(request: web.Request) -> web.Response:
    """What a task's file_id is: its name as uploaded, size and SHA-256 (not its bytes)."""
    file_id = request.match_info["id"]
    try:
        check_file_id("id", file_id)
    except ValidationFailed:
        raise NotFound(f"file {file_id[:64]!r} does not exist") from None
    try:
        info = await (await _bucket(request)).get_info(file_id)
    except ObjectNotFoundError:
        raise NotFound(f"file {file_id} does not exist") from None
    digest = (info.digest or "").removeprefix("SHA-256=").removeprefix("sha-256=")
    try:
        sha256 = base64.urlsafe_b64decode(digest).hex()
    except ValueError:
        sha256 = ""
    return json_response(
        StoredFile(file_id=file_id, sha256=sha256, size=info.size or 0, name=info.description or "")
    )


async def _store(request: web.Request, file_id: str, spool: BufferedRandom, name: str) -> None:
    """Puts the file in the bucket whole, or leaves nothing of it there."""
    store = await _bucket(request)
    try:
        await store.put(file_id, spool, meta=ObjectMeta(name=file_id, description=name))
    except BaseException:
        with contextlib.suppress(Exception):
            await store.delete(file_id)
        raise


async def _bucket(request: web.Request) -> ObjectStore:
    js = request.app[NATS].jetstream()
    try:
        return await js.object_store(FILES_BUCKET)
    except BucketNotFoundError:
        replicas = request.app[SETTINGS].stream_replicas
        return await js.create_object_store(
            FILES_BUCKET, config=ObjectStoreConfig(bucket=FILES_BUCKET, replicas=replicas)
        )
