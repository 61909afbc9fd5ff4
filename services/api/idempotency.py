"""Idempotency-Key on POST: a retried request gets the first answer again, and runs once.

A write whose answer was lost after its events were stored (the read tables lagged: a 503
`read_model_lagging`) is not run again on a retry: the retry finds its events in the log by
their ids (derived from the key) and answers as the first call would have, once the read
tables show them.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec

from events.codec import RecordedEvent
from services.domain.errors import Conflict, ValidationFailed
from services.engine.handler import Outcome
from services.engine.read_your_writes import ProjectionLagging
from services.infra.db import Db
from services.infra.store import ConcurrencyError, DuplicateEvent, read_ids

_NAMESPACE = uuid.UUID("6f1f6a3e-3b1e-4a53-9b0f-5d2d8c1f0a7e")
MAX_KEY_LENGTH = 255
# The status kept for a key whose write is stored but whose answer is not (yet): its retry
# runs the handler again, which finds the write in the log (recorded_once).
PENDING = 0


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
Write = Callable[[], Awaitable[Outcome[Any] | list[RecordedEvent]]]


async def recorded_once(db: Db, call: IdempotentCall, write: Write) -> list[RecordedEvent]:
    """The events of the call's write: appended by write() now or, when a try with the same
    key stored them before (its answer lost), those, as the log has them; never both."""
    earlier = await _recorded_before(db, call)
    if earlier:
        return earlier
    try:
        done = await write()
    except (DuplicateEvent, ConcurrencyError):
        earlier = await _recorded_before(db, call)  # a concurrent try of the same key won
        if earlier:
            return earlier
        raise
    return done.recorded if isinstance(done, Outcome) else done


async def _recorded_before(db: Db, call: IdempotentCall) -> list[RecordedEvent]:
    event_ids = call.event_ids(1)
    return [] if event_ids is None else await read_ids(db, event_ids)


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
    except ProjectionLagging:
        # Stored but not answered: the retry must be this same request, and answers then.
        await _keep(pool, user, key, request_hash, StoredResponse(PENDING, b""))
        raise
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
        await _keep(pool, user, key, request_hash, response)
    return response


async def _keep(
    pool: asyncpg.Pool, user: str, key: str, request_hash: str, response: StoredResponse
) -> None:
    """Stores the key's answer; a real answer replaces a pending one, never another answer."""
    await pool.execute(
        """
        INSERT INTO idempotency_keys (user_id, key, request_hash, status, body)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (user_id, key) DO UPDATE SET status = EXCLUDED.status, body = EXCLUDED.body
        WHERE idempotency_keys.status = $6 AND EXCLUDED.status <> $6
        """,
        user,
        key,
        request_hash,
        response.status,
        response.body,
        PENDING,
    )


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
    if row["status"] == PENDING:
        return None
    return StoredResponse(row["status"], bytes(row["body"]))


def _is_utf8(text: str) -> bool:
    """False for a header that was not UTF-8: its bytes arrive as surrogates."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
