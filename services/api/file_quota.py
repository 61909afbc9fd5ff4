"""The files quota: bytes of uploaded files per user, reserved before a file is stored."""

from __future__ import annotations

import asyncpg

from services.domain.errors import TooLarge

QUOTA_SETTING = "DEPLOYX_FILES_QUOTA_BYTES"


class QuotaExceeded(TooLarge):
    """A file that would take its user past the files quota: 413, nothing stored."""

    code = "quota_exceeded"

    def __init__(self, quota: int, used: int, size: int, *, at_least: bool = False) -> None:
        this = f"at least {size}" if at_least else str(size)
        super().__init__(
            f"the files quota of {quota} bytes per user ({QUOTA_SETTING}) would be exceeded: "
            f"{used} bytes stored, this file is {this} bytes",
            {"quota_bytes": quota, "used_bytes": used, "size": size},
        )


async def used_bytes(pool: asyncpg.Pool, user: str) -> int:
    used = await pool.fetchval("SELECT bytes FROM file_usage WHERE user_name = $1", user)
    return int(used or 0)


async def reserve(pool: asyncpg.Pool, user: str, size: int, quota: int) -> None:
    """Counts size against user's quota, in one statement (so racing uploads cannot both
    take the last of it), or raises QuotaExceeded."""
    if size > quota:
        raise QuotaExceeded(quota, await used_bytes(pool, user), size)
    total = await pool.fetchval(
        """
        INSERT INTO file_usage AS usage (user_name, bytes, files) VALUES ($1, $2, 1)
        ON CONFLICT (user_name) DO UPDATE
            SET bytes = usage.bytes + EXCLUDED.bytes, files = usage.files + 1
            WHERE usage.bytes + EXCLUDED.bytes <= $3
        RETURNING bytes
        """,
        user,
        size,
        quota,
    )
    if total is None:
        raise QuotaExceeded(quota, await used_bytes(pool, user), size)


async def release(pool: asyncpg.Pool, user: str, size: int) -> None:
    """Gives back a reservation whose file was not stored after all."""
    await pool.execute(
        "UPDATE file_usage SET bytes = bytes - $2, files = files - 1 WHERE user_name = $1",
        user,
        size,
    )
