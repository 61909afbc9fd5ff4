"""The webhooks sender and the audit sealer as services: `deployx webhooks`, `deployx sealer`."""

from __future__ import annotations

import asyncio

import aiohttp
import structlog

from services.engine.anchors import publish_anchors
from services.engine.sealer import run_sealer
from services.engine.webhook_enqueuer import run_enqueuer
from services.engine.webhook_sender import Sender, SenderConfig
from services.infra.bus import connect_nats
from services.infra.db import open_pool
from services.infra.settings import Settings

log = structlog.get_logger("deployx")


def sender_config(settings: Settings) -> SenderConfig:
    return SenderConfig(
        timeout=settings.webhook_timeout_seconds,
        concurrency=settings.webhook_concurrency,
        per_webhook=settings.webhook_per_subscription,
        first_retry=settings.webhook_first_retry_seconds,
        max_retry=settings.webhook_max_retry_seconds,
        give_up_seconds=settings.webhook_retry_seconds,
        session_url=settings.database_session_url,
    )


async def serve_webhooks(settings: Settings, stop: asyncio.Event) -> None:
    """Turns the log into deliveries and sends them; replicas share the work."""
    config = sender_config(settings)
    # Its queries leave no session state (locks and settings are the transaction's own): a
    # connection goes back without the reset query, a round trip saved per checkout.
    pool = await open_pool(settings, max_size=4, reset_session=False)
    # Our own bound per process; no proxies from the environment, no cookies kept.
    connector = aiohttp.TCPConnector(limit=config.concurrency)
    session = aiohttp.ClientSession(
        connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
    )
    log.info("webhooks_started")
    try:
        await asyncio.gather(
            run_enqueuer(pool, stop, config.give_up_seconds, session_url=config.session_url),
            Sender(pool, config, session).run(stop),
        )
    finally:
        await session.close()
        await pool.close()


async def serve_sealer(settings: Settings, stop: asyncio.Event) -> None:
    """Seals the log into the audit chain and publishes its head on NATS now and then."""
    # As the webhooks' pool: no session state left behind, no reset query per checkout.
    pool = await open_pool(settings, max_size=3, reset_session=False)
    client = await connect_nats(settings.nats_url, "deployx-sealer", settings.nats_ca)
    log.info("sealer_started")
    try:
        await asyncio.gather(
            run_sealer(pool, stop, session_url=settings.database_session_url),
            publish_anchors(
                pool,
                client.jetstream(),
                stop,
                settings.audit_anchor_seconds,
                settings.stream_replicas,
            ),
        )
    finally:
        await client.drain()
        await pool.close()
