"""Typed application keys: what create_app puts on the app for views to use."""

from __future__ import annotations

import asyncpg
import nats.aio.client
from aiohttp import web

from services.api.task_reads import TaskReads
from services.engine.live_feed import LiveFeed
from services.engine.read_your_writes import ProjectionWatcher
from services.infra.auth import Principal, TokenCache
from services.infra.group_commit import GroupCommit
from services.infra.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
TOKENS = web.AppKey("tokens", TokenCache)
WATCHER = web.AppKey("watcher", ProjectionWatcher)
# Every write of the API appends through it: concurrent requests share a commit.
APPENDS = web.AppKey("appends", GroupCommit)
# Tasks read by id (every write's answer): concurrent requests share a query.
TASK_READS = web.AppKey("task_reads", TaskReads)
NATS = web.AppKey("nats", nats.aio.client.Client)
LIVE = web.AppKey("live", LiveFeed)
PRINCIPAL = web.RequestKey("principal", Principal)  # set by the auth middleware
BEARER = web.RequestKey("bearer", str)  # the token itself, for streams that re-check it


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]
