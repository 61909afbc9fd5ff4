"""create_app(settings): wires routes, middlewares, and the pools that live in cleanup_ctx."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from services.api import admin, executions, files, groups, live, misc, tasks
from services.api import audit as audit_routes
from services.api import webhooks as webhook_routes
from services.api.headers import add_security_headers
from services.api.keys import (
    APPENDS,
    LIVE,
    NATS,
    POOL,
    SETTINGS,
    TASK_READS,
    TOKENS,
    WATCHER,
)
from services.api.middleware import access_log, authenticate, errors
from services.api.openapi import openapi_document
from services.api.responses import json_response
from services.api.task_reads import TaskReads
from services.engine.live_feed import LiveFeed
from services.engine.read_your_writes import ProjectionWatcher
from services.engine.registry import DeviceRegistry
from services.infra import metrics
from services.infra.auth import TokenCache
from services.infra.bus import connect_nats
from services.infra.db import open_pool
from services.infra.group_commit import GroupCommit
from services.infra.package_files import package_file
from services.infra.settings import Settings

WEB_DIR = package_file("services.api", "web")
log = structlog.get_logger(__name__)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[access_log, errors, authenticate], client_max_size=settings.max_body_bytes
    )
    app[SETTINGS] = settings
    # The API keeps the device registry and answers for the dead letters of every consumer.
    metrics.on_scrape("devices_online", metrics.refresh_devices_online, metrics.DEVICES_ONLINE)
    metrics.on_scrape("dead_letters", metrics.refresh_dead_letters, metrics.DEAD_LETTERS)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_nats)
    app.cleanup_ctx.append(_registry)
    app.cleanup_ctx.append(_live_feed)
    app.add_routes(tasks.routes)
    app.add_routes(groups.routes)
    app.add_routes(misc.routes)
    app.add_routes(files.routes)
    app.add_routes(live.routes)
    app.add_routes(admin.routes)
    app.add_routes(executions.routes)
    app.add_routes(webhook_routes.routes)
    app.add_routes(audit_routes.routes)
    document = openapi_document()

    async def openapi(_request: web.Request) -> web.Response:
        return json_response(document)

    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_get("/", _console)
    if WEB_DIR.is_dir():
        app.router.add_static("/web/", WEB_DIR)
    app.on_response_prepare.append(_revalidate_console)
    app.on_response_prepare.append(add_security_headers)
    return app


async def _revalidate_console(request: web.Request, response: web.StreamResponse) -> None:
    """The console's files are checked with the server on every load (a 304 when unchanged), so
    a browser never runs yesterday's modules against today's API."""
    if request.path == "/" or request.path.startswith("/web/"):
        response.headers["Cache-Control"] = "no-cache"


async def _console(_request: web.Request) -> web.StreamResponse:
    index = WEB_DIR / "index.html"
    if index.is_file():
        return web.FileResponse(index)
    return web.Response(text="DeployX Scheduler API. See /api/openapi.json.")


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await open_pool(settings, settings.db_pool_max)
    # LISTEN on the session URL when it is not the pool's (docs/operations.md, "Poolers").
    listen_on = settings.database_session_url
    watcher = ProjectionWatcher(pool, session_url=listen_on)
    await watcher.start()
    tokens = TokenCache(pool, session_url=listen_on)
    await tokens.start()
    app[POOL], app[WATCHER], app[TOKENS] = pool, watcher, tokens
    app[APPENDS] = GroupCommit(pool)
    app[TASK_READS] = TaskReads(pool)
    yield
    await tokens.stop()
    await watcher.stop()
    await pool.close()


async def _nats(app: web.Application) -> AsyncIterator[None]:
    client = await connect_nats(app[SETTINGS].nats_url, "deployx-api", app[SETTINGS].nats_ca)
    app[NATS] = client
    yield
    await client.drain()


async def _registry(app: web.Application) -> AsyncIterator[None]:
    """Every API replica keeps the registry: presence writes are idempotent, events deduped."""
    stop = asyncio.Event()
    task = asyncio.create_task(DeviceRegistry(app[POOL], app[NATS]).run(stop))
    yield
    stop.set()
    await task


async def _live_feed(app: web.Application) -> AsyncIterator[None]:
    feed = LiveFeed(app[POOL], app[NATS])
    await feed.start()
    app[LIVE] = feed

    async def end_streams(_app: web.Application) -> None:
        feed.end_streams()

    # on_shutdown runs before the server waits for open requests; SSE streams never end alone.
    app.on_shutdown.append(end_streams)
    yield
    await feed.stop()
