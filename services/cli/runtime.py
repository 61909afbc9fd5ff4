"""The server's services (API, projector, ticker, relay, executors), each until told to stop."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import structlog

from projections import PROJECTIONS
from services.api.app import create_app
from services.api.server import api_url, start_api
from services.cli.lifecycle import Service, run_until_signal
from services.domain.kinds import KINDS
from services.engine.projector import run_projector
from services.engine.read_your_writes import ProjectionWatcher
from services.engine.relay import CHECKPOINT as RELAY_CHECKPOINT
from services.engine.relay import ensure_stream, run_relay
from services.engine.ticker import Ticker
from services.executor.file_server import FileServer
from services.executor.run import Pacing
from services.executor.service import run_executor
from services.infra import metrics
from services.infra.bus import NATS_UNAVAILABLE, connect_nats
from services.infra.clock import Backoff, SystemClock, wait_first
from services.infra.db import UNAVAILABLE, describe, open_pool, reconnect_backoff
from services.infra.health import serve_health
from services.infra.rate_limit import TokenBuckets
from services.infra.rejections import Rejections
from services.infra.settings import Settings

log = structlog.get_logger("deployx")
SHUTDOWN_GRACE = 15.0


async def serve_api(settings: Settings, stop: asyncio.Event) -> None:
    # On SIGTERM the API stops accepting, lets requests in flight finish for up to
    # SHUTDOWN_GRACE seconds, then closes: well inside Kubernetes' default 30 s.
    app = create_app(settings)
    runner = await start_api(app, settings, access_log=None, shutdown_timeout=SHUTDOWN_GRACE)
    log.info("api_listening", url=api_url(settings))
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


async def serve_projector(settings: Settings, stop: asyncio.Event) -> None:
    metrics.on_scrape("projection_lag", metrics.projection_lag([p.name for p in PROJECTIONS]))
    # No reset query per checkout (a round trip on every wake-up): the projector's statements
    # leave no session state, and a projection rebuild's connection (blue_green) that did not
    # end cleanly is closed rather than given back.
    pool = await open_pool(settings, max_size=4, reset_session=False)
    log.info("projector_started")
    try:
        await run_projector(pool, stop, session_url=settings.database_session_url)
    finally:
        await pool.close()


async def serve_ticker(settings: Settings, stop: asyncio.Event) -> None:
    metrics.export(metrics.TICKER_DECIDED, metrics.TICKER_FIRED, metrics.TICKER_LOST_RACES)
    # It ticks on every move of the tasks projection, three checkouts a tick; its queries leave
    # no session state, so a connection goes back without the reset query's round trip.
    pool = await open_pool(settings, max_size=4, reset_session=False)
    watcher = ProjectionWatcher(pool, session_url=settings.database_session_url)
    await watcher.start()
    log.info("ticker_started")
    try:
        await Ticker(pool, SystemClock(), watcher).run(stop)
    finally:
        await watcher.stop()
        await pool.close()


async def serve_relay(settings: Settings, stop: asyncio.Event) -> None:
    metrics.on_scrape("relay_lag", metrics.relay_lag(RELAY_CHECKPOINT))
    # All on the session URL: the leader lock lives as long as the session that took it.
    pool = await open_pool(settings, max_size=2, session=True)
    client = await connect_nats(settings.nats_url, "deployx-relay", settings.nats_ca)
    failures, outage = Backoff(first=0.5, limit=30.0), reconnect_backoff()
    try:
        while not stop.is_set():
            began = time.monotonic()
            try:
                js = client.jetstream()
                await ensure_stream(js, settings.stream_replicas)
                await run_relay(pool, client, stop, lease_seconds=settings.relay_lease_seconds)
                continue
            except (*UNAVAILABLE, *NATS_UNAVAILABLE) as exc:
                # NATS or PostgreSQL away: the checkpoint holds, so nothing is lost; retry.
                log.warning("relay_failed", error=describe(exc))
                delay = outage
            except Exception:
                log.exception("relay_failed")
                delay = failures
            if time.monotonic() - began > delay.limit:
                delay.reset()  # it had been running well: this is a new failure, not the same
            await wait_first(stop, timeout=delay.next())
    finally:
        await client.drain()
        await pool.close()


def executor_service(task_type: str) -> Service:
    async def serve_executor(settings: Settings, stop: asyncio.Event) -> None:
        # Its queries set no session state (no SET, LISTEN, advisory or cursor outlives a
        # statement): a connection goes back without a reset query, a round trip saved on
        # each of a run's checkouts.
        pool = await open_pool(settings, max_size=10, reset_session=False)
        client = await connect_nats(
            settings.nats_url, f"deployx-executor-{task_type}", settings.nats_ca
        )
        failures = Backoff(first=0.5, limit=30.0)
        # Executors of kinds that hand devices an upload (file, script) also serve those files,
        # all in one queue group: agents may not read the bucket.
        # Device messages refused by either are written by the executor's housekeeping.
        rejections = Rejections()
        serves_files = KINDS[task_type].file_field is not None
        limits = TokenBuckets(settings.file_requests_per_second, settings.file_requests_burst)
        files = intake = None
        if serves_files:
            # File requests come on a connection of their own: a device flooding them fills
            # only that connection's queue at nats-server, not the one the executor's fetches,
            # results and JetStream reads come through (docs/security.md).
            intake = await connect_nats(
                settings.nats_url, f"deployx-files-{task_type}", settings.nats_ca
            )
            files = FileServer(pool, client, rejections, limits=limits, intake=intake)
        try:
            if files is not None:
                await files.start()
            while not stop.is_set():
                try:
                    await run_executor(
                        pool,
                        client,
                        task_type,
                        SystemClock(),
                        stop,
                        ack_wait=timedelta(seconds=settings.executor_ack_wait),
                        stream_replicas=settings.stream_replicas,
                        rejections=rejections,
                        per_event=settings.devices_per_event,
                        pacing=Pacing(
                            settings.executor_publish_slice,
                            settings.executor_jobs_in_flight,
                            settings.executor_pace_seconds,
                        ),
                    )
                except NATS_UNAVAILABLE as exc:
                    # JetStream electing a leader, or NATS away while starting: again soon.
                    log.warning("executor_failed", task_type=task_type, error=describe(exc))
                    await wait_first(stop, timeout=1.0)
                except Exception:
                    # Whatever it held is unacknowledged and will be redelivered: start over.
                    log.exception("executor_failed", task_type=task_type)
                    await wait_first(stop, timeout=failures.next())
        finally:
            if files is not None:
                await files.stop()
            if intake is not None:
                await intake.drain()
            await client.drain()
            await pool.close()

    return serve_executor


def run_alone(settings: Settings, service: Service) -> None:
    run_with_probes(settings, [service])


def run_with_probes(settings: Settings, services: list[Service]) -> None:
    """Runs services until SIGINT or SIGTERM, answering probes on DEPLOYX_HEALTH_PORT if set."""
    probes: list[Service] = [serve_health] if settings.health_port else []
    run_until_signal(settings, [*services, *probes])
