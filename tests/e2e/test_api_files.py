"""POST /api/files refuses what it cannot store whole: a multipart body cut short, and files
past the user's quota; either way nothing is left in the bucket."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.js.errors import BucketNotFoundError, NotFoundError

from services.agent.protocol import FILES_BUCKET
from tests.e2e.api import Response, assert_error
from tests.stack import Client, Stack, running_stack

FILES = "/api/files"
QUOTA = 1000
PART_HEAD = (
    b"--b\r\n"
    b'Content-Disposition: form-data; name="file"; filename="app.conf"\r\n'
    b"Content-Type: application/octet-stream\r\n\r\n"
)
MULTIPART = {"Content-Type": "multipart/form-data; boundary=b"}
RAW = {"Content-Type": "application/octet-stream"}


@pytest.fixture
async def small_quota(database_url: str, nats_url: str) -> AsyncIterator[Stack]:
    async with running_stack(database_url, nats_url, files_quota_bytes=QUOTA) as running:
        yield running


async def stored_objects(nats_url: str) -> list[str]:
    """The names of the files in the bucket, as NATS has them (none: no bucket at all)."""
    client = await nats.connect(nats_url)
    try:
        store = await client.jetstream().object_store(FILES_BUCKET)
        return sorted(info.name or "" for info in await store.list(ignore_deletes=True))
    except (BucketNotFoundError, NotFoundError):
        return []
    finally:
        await client.close()


async def upload(client: Client, content: bytes, headers: dict[str, str] = RAW) -> Response:
    return await client.post(FILES, data=content, headers=headers)


CUT_SHORT = {
    "no delimiter after the content": PART_HEAD + b"server_name example;\n",
    "a delimiter but never the closing one": PART_HEAD + b"server_name example;\n\r\n--b\r\n",
    "a delimiter without its line end": PART_HEAD + b"server_name example;\n\r\n--b",
    "the part's headers never end": b'--b\r\nContent-Disposition: form-data; name="file"\r\n',
}


@pytest.mark.parametrize("body", CUT_SHORT.values(), ids=CUT_SHORT.keys())
async def test_a_multipart_upload_cut_short_is_400_and_stores_nothing(
    stack: Stack, nats_url: str, body: bytes
) -> None:
    operator = await stack.client("ops", "operator")

    response = await upload(operator, body, MULTIPART)

    error = assert_error(response, 400, "malformed_body")
    assert "multipart" in error["message"], error
    assert await stored_objects(nats_url) == []


async def test_a_whole_multipart_upload_is_stored(stack: Stack, nats_url: str) -> None:
    operator = await stack.client("ops", "operator")
    body = PART_HEAD + b"server_name example;\n\r\n--b--\r\n"

    status, stored = await upload(operator, body, MULTIPART)

    assert status == 201, stored
    assert (stored["size"], stored["name"]) == (len(b"server_name example;\n"), "app.conf")
    assert await stored_objects(nats_url) == [stored["file_id"]]


async def test_fields_after_the_file_part_are_read_to_the_closing_boundary(
    stack: Stack, nats_url: str
) -> None:
    operator = await stack.client("ops", "operator")
    field = b'--b\r\nContent-Disposition: form-data; name="note"\r\n\r\n'
    whole = PART_HEAD + b"x\r\n" + field + b"hello\r\n--b--\r\n"
    too_much = PART_HEAD + b"x\r\n" + field + b"h" * (65 * 1024) + b"\r\n--b--\r\n"

    status, stored = await upload(operator, whole, MULTIPART)
    assert status == 201, stored
    error = assert_error(await upload(operator, too_much, MULTIPART), 400, "malformed_body")

    assert "fields after the file" in error["message"], error
    assert await stored_objects(nats_url) == [stored["file_id"]]


async def test_a_file_past_the_users_quota_is_413_naming_it_and_stores_nothing(
    small_quota: Stack, nats_url: str
) -> None:
    alice = await small_quota.client("alice", "operator")
    status, first = await upload(alice, os.urandom(600))
    assert status == 201, first

    error = assert_error(await upload(alice, os.urandom(401)), 413, "quota_exceeded")

    assert "quota" in error["message"] and str(QUOTA) in error["message"], error
    assert error["details"] == {"quota_bytes": QUOTA, "used_bytes": 600, "size": 401}
    assert await stored_objects(nats_url) == [first["file_id"]]
    # What is left of the quota can still be used, to the byte; other users have their own.
    status, last = await upload(alice, os.urandom(400))
    assert status == 201, last
    status, bobs = await upload(await small_quota.client("bob", "operator"), os.urandom(1000))
    assert status == 201, bobs
    assert await stored_objects(nats_url) == sorted(
        [first["file_id"], last["file_id"], bobs["file_id"]]
    )


async def test_a_file_larger_than_the_whole_quota_is_refused_before_it_is_read(
    small_quota: Stack, nats_url: str
) -> None:
    alice = await small_quota.client("alice", "operator")

    error = assert_error(await upload(alice, os.urandom(QUOTA + 1)), 413, "quota_exceeded")

    assert error["details"]["used_bytes"] == 0, error
    assert await stored_objects(nats_url) == []


async def test_uploads_racing_for_the_last_of_the_quota_never_exceed_it(
    small_quota: Stack, nats_url: str
) -> None:
    alice = await small_quota.client("alice", "operator")

    answers = await asyncio.gather(*(upload(alice, os.urandom(300)) for _ in range(6)))

    statuses = sorted(status for status, _ in answers)
    assert statuses == [201, 201, 201, 413, 413, 413], answers
    stored = sorted(body["file_id"] for status, body in answers if status == 201)
    assert await stored_objects(nats_url) == stored


async def test_a_stored_file_is_described_by_name_size_and_digest(stack: Stack) -> None:
    """What the console shows of a file task: "app.conf, 21 B", not the file's id."""
    client = await stack.client("ada", "operator")
    content = b"server_name example;\n"
    status, stored = await client.post(f"{FILES}?name=app.conf", data=content, headers=RAW)
    assert status == 201, stored

    status, described = await client.get(f"{FILES}/{stored['file_id']}")

    assert status == 200, described
    assert described == {
        "file_id": stored["file_id"],
        "name": "app.conf",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }
    assert_error(await client.get(f"{FILES}/{uuid.uuid4()}"), 404)
    assert_error(await client.get(f"{FILES}/not-an-id"), 404)
