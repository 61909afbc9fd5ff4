"""API tokens (stored hashed) and the role rules of the contract."""

from __future__ import annotations

import hashlib
import secrets
import time

import asyncpg
import msgspec

ROLES = ("admin", "operator", "viewer")
TOKEN_PREFIX = "dx_"


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


class TokenCache:
    """Looks tokens up, remembering answers briefly so a busy API does not ask on every call."""

    def __init__(self, pool: asyncpg.Pool, ttl_seconds: float = 10.0) -> None:
        self._pool = pool
        self._ttl = ttl_seconds
        self._known: dict[bytes, tuple[float, Principal | None]] = {}

    async def principal(self, token: str) -> Principal | None:
        digest = hash_token(token)
        now = time.monotonic()
        cached = self._known.get(digest)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        row = await self._pool.fetchrow(
            "SELECT user_name, role FROM api_tokens WHERE token_hash = $1", digest
        )
        principal = Principal(row["user_name"], row["role"]) if row else None
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[digest] = (now, principal)
        return principal
