"""Execution routes across tasks: list, get, cancel, rerun, and ad-hoc runs."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import msgspec
from aiohttp import web

from events.execution import ExecutionRequested
from projections.device_views import missing_groups
from projections.execution_views import Execution, ExecutionFilter, find_executions, get_execution
from services.api.idempotency import IdempotentCall, StoredResponse, recorded_once
from services.api.keys import APPENDS, POOL, principal_of
from services.api.responses import NUL, NUL_REASON, decode_body, encode, json_response, query_int
from services.api.writes import metadata, now, respond_once, settled, writer
from services.domain.errors import NotFound, ValidationFailed
from services.domain.execution import fold
from services.domain.run_requests import RerunInput, RunInput, request_adhoc, request_rerun
from services.engine.execution_commands import cancel_execution
from services.engine.run_sources import source_of
from services.infra.store import read_stream

routes = web.RouteTableDef()
MAX_OFFSET = 10_000_000
STATUSES = ("running", "success", "failed", "canceled")
TRIGGERS = ("schedule", "manual", "rerun", "adhoc")


class CancelRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: str = msgspec.field(default="")


@routes.get("/api/executions")
async def list_all(request: web.Request) -> web.Response:
    params = request.query
    where = ExecutionFilter(
        owner=principal_of(request).owner_filter(),
        task_id=_optional_uuid(params, "task_id"),
        status=_choice(params, "status", STATUSES),
        device_id=_text(params, "device_id", 128),
        trigger=_choice(params, "trigger", TRIGGERS),
    )
    limit = query_int(params, "limit", 50, 1, 1000)
    offset = query_int(params, "offset", 0, 0, MAX_OFFSET)
    return json_response(await find_executions(request.app[POOL], where, limit, offset))


@routes.post("/api/executions")
async def run_adhoc(request: web.Request) -> web.Response:
    """One run now on the devices named, with no task: recorded and audited like any run."""
    principal = writer(request)
    body = await request.read()
    run = decode_body(body, RunInput)
    missing = await missing_groups(request.app[POOL], run.group_ids)
    if missing:
        raise ValidationFailed("group_ids", f"no device group has the id {missing[0]}")

    async def start(call: IdempotentCall) -> StoredResponse:
        execution_id = call.derived_id("execution")
        return await _request_run(request, call, request_adhoc(run, execution_id, now()))

    return await respond_once(request, principal, body, start)


@routes.post("/api/executions/{id}/rerun")
async def rerun(request: web.Request) -> web.Response:
    """A new run of an earlier one's work on the devices chosen among its targets."""
    principal = writer(request)
    earlier_id = _execution_id(request)
    body = await request.read()
    choice = decode_body(body, RerunInput)
    await _visible(request, earlier_id)
    pool = request.app[POOL]
    source = await source_of(pool, earlier_id)
    if source is None:
        raise NotFound(f"execution {earlier_id} has not started: nothing to run again")

    async def start(call: IdempotentCall) -> StoredResponse:
        history = await read_stream(pool, earlier_id)
        earlier = fold(earlier_id, (recorded.event for recorded in history))
        execution_id = call.derived_id("execution")
        asked = request_rerun(earlier, source, choice, execution_id, now())
        return await _request_run(request, call, asked)

    return await respond_once(request, principal, body, start)


async def _request_run(
    request: web.Request, call: IdempotentCall, asked: ExecutionRequested
) -> StoredResponse:
    pool = request.app[POOL]
    recorded = await recorded_once(
        pool,
        call,
        lambda: request.app[APPENDS].append(
            asked.execution_id,
            asked.task_type,
            [asked],
            expected_version=0,
            metadata=metadata(request, principal_of(request)),
            event_ids=call.event_ids(1),
        ),
    )
    await settled(request, recorded, ["executions"])
    return StoredResponse(202, encode({"execution_id": asked.execution_id}))


@routes.get("/api/executions/{id}")
async def get_one(request: web.Request) -> web.Response:
    return json_response(await _visible(request, _execution_id(request)))


@routes.post("/api/executions/{id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    principal = writer(request)
    execution_id = _execution_id(request)
    body = await request.read()
    asked = decode_body(body, CancelRequest) if body.strip() else CancelRequest()
    if len(asked.reason) > 500 or NUL in asked.reason:
        raise ValidationFailed("reason", "at most 500 characters, no NUL")
    execution = await _visible(request, execution_id)
    recorded = await cancel_execution(
        request.app[POOL],
        execution_id,
        execution.task_type,
        now(),
        reason=asked.reason,
        metadata=metadata(request, principal),
    )
    await settled(request, recorded, ["executions"])
    return json_response(await _visible(request, execution_id), status=202)


async def _visible(request: web.Request, execution_id: str) -> Execution:
    owner = principal_of(request).owner_filter()
    execution = await get_execution(request.app[POOL], execution_id, owner)
    if execution is None:
        raise NotFound(f"execution {execution_id} does not exist")
    return execution


def _execution_id(request: web.Request) -> str:
    raw = request.match_info["id"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFound(f"execution {raw} does not exist") from None


def _optional_uuid(params: Mapping[str, str], name: str) -> str | None:
    raw = params.get(name) or None
    if raw is None:
        return None
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ValidationFailed(name, f"must be a UUID, got {raw[:60]!r}") from None


def _choice(params: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    raw = params.get(name) or None
    if raw is not None and raw not in allowed:
        raise ValidationFailed(name, f"must be one of {', '.join(allowed)}")
    return raw


def _text(params: Mapping[str, str], name: str, limit: int) -> str | None:
    raw = params.get(name) or None
    if raw is not None and (NUL in raw or len(raw) > limit):
        raise ValidationFailed(name, f"{NUL_REASON}, at most {limit} characters")
    return raw
