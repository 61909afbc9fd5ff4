"""The webhook sender: claims due queue heads, POSTs them signed, records every attempt."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

import aiohttp
import asyncpg
import msgspec
import structlog

from services.domain.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    retry_delay,
    signature,
)
from services.engine.webhook_cooldown import Cooldowns
from services.infra.clock import Backoff, wait_first
from services.infra.db import UNAVAILABLE, describe, reconnect_backoff
from services.infra.listen import Listener
from services.infra.webhook_claims import Claimed, Outcome, claim, complete
from services.infra.webhook_queue import WAKE_CHANNEL, expire, headless, promote, quick_commit

log = structlog.get_logger("deployx.webhooks")
# Due retries are found by looking this often; new deliveries wake the sender at once.
POLL = 1.0
REPAIR_EVERY = 30.0
ERROR_LIMIT = 500


class SenderConfig(msgspec.Struct, frozen=True, kw_only=True):
    timeout: float = 10.0  # per request, connecting included
    concurrency: int = 128  # requests in flight, all subscriptions together
    per_webhook: int = 8  # requests in flight for one subscription
    first_retry: float = 1.0
    max_retry: float = 3600.0
    give_up_seconds: float = 86_400.0
    session_url: str | None = None  # where to LISTEN (Listener), if not on the pool


class Sender:
    """One replica's sender; any number run side by side (leases, SKIP LOCKED)."""

    def __init__(
        self, pool: asyncpg.Pool, config: SenderConfig, session: aiohttp.ClientSession
    ) -> None:
        self._pool, self._config, self._session = pool, config, session
        self._busy: dict[str, int] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._done: list[Outcome] = []
        self._wake = asyncio.Event()
        self._cooldowns = Cooldowns(config.first_retry, config.max_retry)

    async def run(self, stop: asyncio.Event) -> None:
        listener = Listener(
            self._pool,
            WAKE_CHANNEL,
            on_notify=lambda _: self._wake.set(),
            on_gap=self._wake.set,
            session_url=self._config.session_url,
        )
        await listener.start()
        failures, outage = Backoff(first=0.5, limit=30.0), reconnect_backoff()
        repair_at = 0.0
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self._flush()
                    if time.monotonic() >= repair_at:
                        grace = self._config.timeout + 60.0
                        stale = await expire(self._pool, grace)
                        await promote(self._pool, [*await headless(self._pool), *stale])
                        repair_at = time.monotonic() + REPAIR_EVERY
                    await self._claim()
                    failures.reset()
                    outage.reset()
                except UNAVAILABLE as exc:
                    log.warning("webhooks_failed", error=describe(exc))
                    await wait_first(stop, timeout=outage.next())
                    continue
                except Exception:
                    log.exception("webhooks_failed")
                    await wait_first(stop, timeout=failures.next())
                    continue
                await wait_first(self._wake, stop, timeout=POLL)
        finally:
            await self._finish()
            await listener.stop()

    async def _finish(self) -> None:
        """Lets requests in flight end (each is bounded by the timeout) and records them."""
        if self._running:
            await asyncio.wait(self._running, timeout=self._config.timeout + 1)
        for task in self._running:
            task.cancel()
        with contextlib.suppress(*UNAVAILABLE):
            await self._flush()

    async def _flush(self) -> None:
        if not self._done:
            return
        outcomes, self._done = self._done, []
        try:
            async with quick_commit(self._pool) as conn:
                ended = await complete(conn, outcomes)
        except BaseException:
            self._done[:0] = outcomes
            raise
        async with quick_commit(self._pool) as conn:  # after the commit: see promote
            await promote(conn, ended)

    async def _claim(self) -> None:
        free = self._config.concurrency - len(self._running)
        if free <= 0:
            return
        lease = self._config.timeout + 30.0
        busy = self._busy | dict.fromkeys(self._cooldowns.resting(), self._config.per_webhook)
        async with quick_commit(self._pool) as conn:
            claimed = await claim(conn, free, self._config.per_webhook, busy, lease)
        for item in claimed:
            self._busy[item.webhook_id] = self._busy.get(item.webhook_id, 0) + 1
            task = asyncio.create_task(self._deliver(item))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _deliver(self, item: Claimed) -> None:
        attempted_at, started, began = datetime.now(UTC), time.perf_counter(), time.monotonic()
        status: int | None = None
        body = item.body
        error = body if isinstance(body, str) else None
        try:
            if isinstance(body, bytes):
                status, error = await self._post(item, body)
        except TimeoutError:
            error = f"no answer within {self._config.timeout:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            error = describe(exc)
        finally:
            self._busy[item.webhook_id] -= 1
            if not self._busy[item.webhook_id]:
                del self._busy[item.webhook_id]
        duration_ms = (time.perf_counter() - started) * 1000
        retry_in = 0.0
        if error is None:
            self._cooldowns.succeeded(item.webhook_id)
        else:
            self._cooldowns.failed(item.webhook_id, began)
            error = _clean(error)
            retry_in = retry_delay(item.attempt, self._config.first_retry, self._config.max_retry)
            log.warning(
                "webhook_attempt_failed",
                webhook_id=item.webhook_id,
                delivery=item.event_id,
                attempt=item.attempt,
                error=error,
            )
        self._done.append(
            Outcome(
                webhook_id=item.webhook_id,
                event_id=item.event_id,
                attempt=item.attempt,
                attempted_at=attempted_at,
                status_code=status,
                error=error,
                duration_ms=duration_ms,
                retry_in=retry_in,
            )
        )
        self._wake.set()

    async def _post(self, item: Claimed, body: bytes) -> tuple[int, str | None]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "DeployX-Webhooks/1",
            EVENT_HEADER: item.event_type,
            DELIVERY_HEADER: item.event_id,
            SIGNATURE_HEADER: signature(item.secret, body),
        }
        timeout = aiohttp.ClientTimeout(total=self._config.timeout)
        async with self._session.post(
            item.url, data=body, headers=headers, timeout=timeout, allow_redirects=False
        ) as response:
            answer = await response.content.read(ERROR_LIMIT)
            if 200 <= response.status < 300:
                return response.status, None
            text = answer.decode(errors="replace").strip()
            return response.status, f"HTTP {response.status}" + (f": {text}" if text else "")


def _clean(error: str) -> str:
    """An error as stored: printable (PostgreSQL's text takes no NUL), and bounded."""
    return "".join(char if char.isprintable() else " " for char in error)[:ERROR_LIMIT]
