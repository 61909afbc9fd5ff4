"""POST /api/files: a file for file deployments, streamed into the JetStream Object Store."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import uuid
from collections.abc import AsyncIterator
from typing import IO

import msgspec
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage
from nats.js.api import ObjectMeta, ObjectStoreConfig
from nats.js.errors import BucketNotFoundError
from nats.js.object_store import ObjectStore

from services.agent_protocol import FILES_BUCKET
from services.api.commands import writer
from services.api.keys import NATS, SETTINGS
from services.api.responses import ApiError, json_response

MAX_FILE_BYTES = 1024**3
CHUNK = 256 * 1024
routes = web.RouteTableDef()


class StoredFile(msgspec.Struct):
    file_id: str
    sha256: str
    size: int
    name: str


@routes.post("/api/files")
async def upload(request: web.Request) -> web.Response:
    """Takes the file as the raw body, or as the first part of a multipart form."""
    writer(request)
    name = request.query.get("name", "")
    chunks: AsyncIterator[bytes]
    if request.content_type.startswith("multipart/"):
        part = await _first_part(request)
        name = name or part.filename or ""
        chunks = _part_chunks(part)
    else:
        chunks = request.content.iter_chunked(CHUNK)
    with tempfile.TemporaryFile() as spool:
        digest, size = await _spool(chunks, spool)
        if size == 0:
            raise ApiError(400, "malformed_body", "the file is empty")
        spool.seek(0)
        file_id = str(uuid.uuid4())
        store = await _bucket(request)
        await store.put(file_id, spool, meta=ObjectMeta(name=file_id, description=name))
    return json_response(StoredFile(file_id=file_id, sha256=digest, size=size, name=name), 201)


async def _first_part(request: web.Request) -> BodyPartReader:
    try:
        part = await (await request.multipart()).next()
    except (BadHttpMessage, ValueError) as exc:  # no boundary, or a part's headers are broken
        raise ApiError(400, "malformed_body", f"the multipart body is malformed: {exc}") from None
    if not isinstance(part, BodyPartReader):
        raise ApiError(400, "malformed_body", "the multipart body has no file part")
    return part


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    try:
        while chunk := await part.read_chunk(CHUNK):
            yield chunk
    except ValueError as exc:  # the part does not end in the boundary
        raise ApiError(400, "malformed_body", f"the multipart body is malformed: {exc}") from None


async def _spool(chunks: AsyncIterator[bytes], spool: IO[bytes]) -> tuple[str, int]:
    """Copies the upload to disk (never whole in memory), hashing it on the way."""
    digest, size = hashlib.sha256(), 0
    async for chunk in chunks:
        size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise ApiError(413, "body_too_large", "a file may be at most 1 GiB")
        digest.update(chunk)
        await asyncio.to_thread(spool.write, chunk)
    return digest.hexdigest(), size


async def _bucket(request: web.Request) -> ObjectStore:
    js = request.app[NATS].jetstream()
    try:
        return await js.object_store(FILES_BUCKET)
    except BucketNotFoundError:
        replicas = request.app[SETTINGS].stream_replicas
        return await js.create_object_store(
            FILES_BUCKET, config=ObjectStoreConfig(bucket=FILES_BUCKET, replicas=replicas)
        )
