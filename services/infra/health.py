"""GET /healthz, /readyz and /metrics on DEPLOYX_HEALTH_PORT, for every service (the API also
answers them on its own port)."""

from __future__ import annotations

import asyncio

import asyncpg
import nats.aio.client
from aiohttp import web

from services.infra.bus import connect_nats
from services.infra.db import open_pool
from services.infra.metrics import CONTENT_TYPE, exposition
from services.infra.settings import Settings

# The first event past each reader's checkpoint, if it has waited longer than $1 seconds.
_STUCK = """
SELECT c.name, extract(epoch FROM now() - e.recorded_at)::int AS waited, e.position
FROM checkpoints c
CROSS JOIN LATERAL (
    SELECT recorded_at, position FROM events
    WHERE (tx_id, position) > (c.tx_id, c.position)
    ORDER BY tx_id, position LIMIT 1
) e
WHERE e.recorded_at < now() - make_interval(secs => $1)
ORDER BY c.name
"""


async def stuck_readers(pool: asyncpg.Pool, stuck_after: float) -> list[str]:
    """Readers of the log that have not moved past an event for stuck_after seconds, in words."""
    rows = await pool.fetch(_STUCK, stuck_after, timeout=2)
    return [
        f"{row['name']} has not passed position {row['position']} for {row['waited']} s"
        for row in rows
    ]


async def readiness(
    pool: asyncpg.Pool, client: nats.aio.client.Client, stuck_after: float = 60.0
) -> tuple[bool, dict[str, object]]:
    """Whether PostgreSQL answers, NATS is connected and no reader of the log is stuck, with
    the reason for each that is not."""
    checks = {"database": "ok", "nats": "ok", "consumers": "ok"}
    try:
        stuck = await stuck_readers(pool, stuck_after)
        read_only = await pool.fetchval("SELECT current_setting('transaction_read_only')")
    except Exception as exc:  # any failure means not ready, and says why
        checks["database"] = f"unavailable: {exc}"
        checks["consumers"] = "unknown: the database is unavailable"
    else:
        if read_only == "on":
            checks["database"] = "read-only: a standby, or a failover under way"
        if stuck:
            checks["consumers"] = "stuck: " + "; ".join(stuck)
    if not client.is_connected:
        checks["nats"] = "unavailable: not connected"
    ready = all(value == "ok" for value in checks.values())
    return ready, {"status": "ready" if ready else "not_ready", "checks": checks}


async def serve_health(settings: Settings, stop: asyncio.Event) -> None:
    """Live while the event loop answers; ready while PostgreSQL and NATS are reachable."""
    pool = await open_pool(settings, max_size=1)
    client = await connect_nats(settings.nats_url, "deployx-health", settings.nats_ca)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        ready, body = await readiness(pool, client, settings.stuck_after_seconds)
        return web.json_response(body, status=200 if ready else 503)

    async def metrics(_request: web.Request) -> web.Response:
        response = web.Response(body=await exposition(pool))
        response.content_type = CONTENT_TYPE
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    assert settings.health_port is not None
    await web.TCPSite(runner, "0.0.0.0", settings.health_port).start()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await client.drain()
        await pool.close()
