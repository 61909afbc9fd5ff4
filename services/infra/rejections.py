"""Device messages refused at the boundary: logged, counted, kept where an operator sees them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog
from prometheus_client import Counter

from services.infra.db import Db

log = structlog.get_logger("deployx.devices")

REJECTED = Counter(
    "deployx_device_messages_rejected_total",
    "Messages from devices refused at the boundary (bad type, range, size, or sender)",
    ["source"],
)
# A flood of bad messages costs one row per (device, source, reason) and flush, no more.
_MAX_KEYS_PER_FLUSH = 1000
_REASON_LIMIT = 300
_SAMPLE_LIMIT = 500


def sample_of(data: bytes) -> str:
    """The start of a refused message, as text that any column can hold."""
    return data[:_SAMPLE_LIMIT].decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _storable(text: str) -> str:
    """text without NUL (which a text column refuses) or lone surrogates (which UTF-8 cannot
    encode)."""
    return text.replace("\x00", "\ufffd").encode("utf-8", errors="replace").decode("utf-8")


@dataclass
class _Noted:
    count: int
    sample: str


class Rejections:
    """Collects refusals between flushes; a repeat of the same one only adds to its count."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str, str], _Noted] = {}

    def note(self, device_id: str, source: str, reason: str, data: bytes) -> None:
        REJECTED.labels(source).inc()
        # A reason may quote the device's own text (msgspec names a bad enum value): stored
        # as any column can hold it, or one NUL would fail every flush of the registry.
        key = (_storable(device_id[:128]), source, _storable(reason[:_REASON_LIMIT]))
        noted = self._pending.get(key)
        if noted is not None:
            noted.count += 1
            return
        if len(self._pending) >= _MAX_KEYS_PER_FLUSH:
            return
        log.warning("device_message_rejected", device_id=key[0], source=source, reason=key[2])
        self._pending[key] = _Noted(1, sample_of(data))

    async def flush(self, db: Db, now: datetime) -> None:
        """Adds what was noted since the last flush to rejected_messages, in one statement."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        keys = list(pending)
        await db.execute(
            """
            INSERT INTO rejected_messages AS r (device_id, source, reason, sample, count,
                first_seen, last_seen)
            SELECT d, s, r, sample, n, $6, $6
            FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
                AS x(d, s, r, sample, n)
            ON CONFLICT (device_id, source, reason) DO UPDATE SET
                count = r.count + EXCLUDED.count, sample = EXCLUDED.sample,
                last_seen = EXCLUDED.last_seen
            """,
            [key[0] for key in keys],
            [key[1] for key in keys],
            [key[2] for key in keys],
            [pending[key].sample for key in keys],
            [pending[key].count for key in keys],
            now,
        )
