"""API tokens (stored hashed) and the role rules of the contract."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from datetime import datetime

import asyncpg
import msgspec

from services.infra.listen import Listener

ROLES = ("admin", "operator", "viewer")
TOKEN_PREFIX = "dx_"
REVOKED_CHANNEL = "deployx_tokens_revoked"
# How long an API trusts what it looked up: the bound on a revocation whose NOTIFY was lost.
CACHE_SECONDS = 1.0


class Principal(msgspec.Struct, frozen=True):
    user: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def can_write(self) -> bool:
        return self.role in ("admin", "operator")

    def owner_filter(self) -> str | None:
        """Whose tasks this principal may see: None means everyone's."""
        return None if self.is_admin else self.user

    def may_see(self, owner: str) -> bool:
        return self.is_admin or owner == self.user


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create_token(db: asyncpg.Pool | asyncpg.Connection, user: str, role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not user.strip():
        raise ValueError("user must not be empty")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    await db.execute(
        "INSERT INTO api_tokens (token_hash, user_name, role) VALUES ($1, $2, $3)",
        hash_token(token),
        user,
        role,
    )
    return token


class TokenInfo(msgspec.Struct, frozen=True):
    """A stored token as `deployx token list` shows it: never the token itself."""

    user: str
    role: str
    created_at: datetime
    sha256_prefix: str


async def list_tokens(db: asyncpg.Pool | asyncpg.Connection) -> list[TokenInfo]:
    rows = await db.fetch(
        "SELECT user_name, role, created_at, token_hash FROM api_tokens"
        " ORDER BY user_name, created_at"
    )
    return [
        TokenInfo(row["user_name"], row["role"], row["created_at"], row["token_hash"].hex()[:12])
        for row in rows
    ]


async def revoke_tokens(
    conn: asyncpg.Connection,
    *,
    token: str | None = None,
    user: str | None = None,
    sha256_prefix: str | None = None,
) -> int:
    """Deletes the token given, or all of a user's, or the one whose hash starts so; tells
    every API (NOTIFY, sent on commit) to forget what it remembers. How many went."""
    value: bytes | str
    if token is not None:
        where, value = "token_hash = $1", hash_token(token)
    elif user is not None:
        where, value = "user_name = $1", user
    elif sha256_prefix is not None:
        if not re.fullmatch(r"[0-9a-fA-F]{8,64}", sha256_prefix):
            raise ValueError("a hash prefix is 8 to 64 hex digits, as `deployx token list` shows")
        where, value = "starts_with(encode(token_hash, 'hex'), $1)", sha256_prefix.lower()
    else:
        raise ValueError("name a token, a user or a hash prefix")
    async with conn.transaction():
        if sha256_prefix is not None:
            found = await conn.fetchval(f"SELECT count(*) FROM api_tokens WHERE {where}", value)
            if found > 1:
                raise ValueError(f"{found} tokens have a hash starting {sha256_prefix}: give more")
        revoked = await conn.fetch(f"DELETE FROM api_tokens WHERE {where} RETURNING 1", value)
        if revoked:
            await conn.execute("SELECT pg_notify($1, '')", REVOKED_CHANNEL)
    return len(revoked)


class TokenCache:
    """Looks tokens up, remembering answers for a second so a busy API does not ask on every
    call; a revocation (NOTIFY on REVOKED_CHANNEL) makes it forget everything at once."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        ttl_seconds: float = CACHE_SECONDS,
        *,
        session_url: str | None = None,
    ) -> None:
        self._pool = pool
        self._ttl = ttl_seconds
        self._known: dict[bytes, tuple[float, Principal | None]] = {}
        # Bumped on every revocation: a lookup that began before one must not be remembered.
        self._generation = 0
        self._changed = asyncio.Event()
        self._listener = Listener(
            pool, REVOKED_CHANNEL, lambda _: self.forget(), self.forget, session_url=session_url
        )

    async def start(self) -> None:
        await self._listener.start()

    async def stop(self) -> None:
        await self._listener.stop()

    def forget(self) -> None:
        self._generation += 1
        self._known.clear()
        self._changed.set()
        self._changed = asyncio.Event()

    @property
    def generation(self) -> int:
        """How many times the cache was told to forget: a stream compares it across a wait."""
        return self._generation

    @property
    def changed(self) -> asyncio.Event:
        """Set at the next revocation: long-lived streams wait on it to check their token."""
        return self._changed

    async def principal(self, token: str) -> Principal | None:
        digest = hash_token(token)
        now = time.monotonic()
        cached = self._known.get(digest)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        generation = self._generation
        row = await self._pool.fetchrow(
            "SELECT user_name, role FROM api_tokens WHERE token_hash = $1", digest
        )
        principal = Principal(row["user_name"], row["role"]) if row else None
        if generation == self._generation:
            if len(self._known) > 10_000:
                self._known.clear()
            self._known[digest] = (now, principal)
        return principal
