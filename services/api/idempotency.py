"""Idempotency-Key on POST: a retried request gets the first answer again, and runs once."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import msgspec

from services.domain.errors import Conflict, ValidationFailed
from services.infra.store import ConcurrencyError, DuplicateEvent

_NAMESPACE = uuid.UUID("6f1f6a3e-3b1e-4a53-9b0f-5d2d8c1f0a7e")
MAX_KEY_LENGTH = 255


class StoredResponse(msgspec.Struct, frozen=True):
    status: int
    body: bytes


class IdempotentCall(msgspec.Struct, frozen=True):
    """A command's ids derived from the key, so a concurrent repeat collides instead of doubling."""

    user: str
    key: str | None

    def derived_id(self, purpose: str) -> str:
        if self.key is None:
            return str(uuid.uuid4())
        return str(uuid.uuid5(_NAMESPACE, f"{self.user}\x00{self.key}\x00{purpose}"))

    def event_ids(self, count: int) -> list[str] | None:
        if self.key is None:
            return None
        return [self.derived_id(f"event-{n}") for n in range(count)]


Handler = Callable[[IdempotentCall], Awaitable[StoredResponse]]


async def run_once(
    pool: asyncpg.Pool, user: str, key: str | None, request_fingerprint: bytes, handler: Handler
) -> StoredResponse:
    """Runs handler once per (user, key); a repeat gets the stored answer of the first run."""
    if key is None:
        return await handler(IdempotentCall(user, None))
    if not key or len(key) > MAX_KEY_LENGTH or not _is_utf8(key):
        reason = f"must be 1 to {MAX_KEY_LENGTH} characters of UTF-8 text"
        raise ValidationFailed("Idempotency-Key", reason)
    request_hash = hashlib.sha256(request_fingerprint).hexdigest()
    stored = await _lookup(pool, user, key, request_hash)
    if stored is not None:
        return stored
    try:
        response = await handler(IdempotentCall(user, key))
    except (DuplicateEvent, ConcurrencyError):
        # The same key is being (or was just) handled by another request: wait for its answer.
        for _ in range(50):
            stored = await _lookup(pool, user, key, request_hash)
            if stored is not None:
                return stored
            await asyncio.sleep(0.1)
        raise Conflict(
            "a request with this Idempotency-Key is still in progress, or its change was stored "
            "but its answer was lost: read the resource with GET"
        ) from None
    if 200 <= response.status < 300:
        await pool.execute(
            """
            INSERT INTO idempotency_keys (user_id, key, request_hash, status, body)
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
            """,
            user,
            key,
            request_hash,
            response.status,
            response.body,
        )
    return response


async def _lookup(
    pool: asyncpg.Pool, user: str, key: str, request_hash: str
) -> StoredResponse | None:
    row = await pool.fetchrow(
        "SELECT request_hash, status, body FROM idempotency_keys WHERE user_id = $1 AND key = $2",
        user,
        key,
    )
    if row is None:
        return None
    if row["request_hash"] != request_hash:
        raise ValidationFailed(
            "Idempotency-Key", "was already used with a different request; use a new key"
        )
    return StoredResponse(row["status"], bytes(row["body"]))


def _is_utf8(text: str) -> bool:
    """False for a header that was not UTF-8: its bytes arrive as surrogates."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
