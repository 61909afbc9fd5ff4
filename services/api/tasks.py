"""Task routes: create, list, get, update, delete, pause, resume, execute, executions, events."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType

from events.codec import RecordedEvent, to_envelope
from events.task import TaskCreated
from projections.device_views import missing_groups
from projections.execution_views import list_executions
from projections.task_views import Task, TaskFilter, list_tasks
from services.api.idempotency import IdempotentCall, StoredResponse, recorded_once
from services.api.keys import APPENDS, POOL, TASK_READS, principal_of
from services.api.responses import NUL, NUL_REASON, decode_body, encode, json_response, query_int
from services.api.writes import metadata, now, respond_once, settled, writer
from services.domain.errors import NotFound, ValidationFailed
from services.domain.kinds import kind_of
from services.domain.task import (
    CreateTask,
    DeleteTask,
    ExecuteNow,
    PauseTask,
    ResumeTask,
    TaskCommand,
    UpdateTask,
)
from services.domain.task_changes import Change, HistoryEntry, task_changes
from services.domain.task_spec import MAX_GROUP_ID, WRITABLE_FIELDS, TaskInput, TaskPatch
from services.engine.handler import TASKS, handle
from services.infra.store import read_task_history

STATUSES = ("pending", "running", "completed", "failed", "paused")
MAX_OFFSET = 10_000_000
routes = web.RouteTableDef()


@routes.post("/api/schedule/tasks")
async def create_task(request: web.Request) -> web.Response:
    principal = writer(request)
    body = await request.read()
    task_input = decode_body(body, TaskInput)
    await _require_groups(request, task_input.group_ids)
    pool = request.app[POOL]

    async def create(call: IdempotentCall) -> StoredResponse:
        task_id = call.derived_id("task")
        command = CreateTask(user_id=principal.user, task=task_input, now=now())
        recorded = await recorded_once(
            pool,
            call,
            lambda: handle(
                pool,
                TASKS,
                task_id,
                command,
                metadata=metadata(request, principal),
                event_ids=call.event_ids(1),
                new_stream=True,
                group=request.app[APPENDS],
            ),
        )
        await settled(request, recorded, ["tasks"])
        return StoredResponse(201, encode(await _visible_task(request, task_id)))

    return await respond_once(request, principal, body, create)


@routes.get("/api/schedule/tasks")
async def list_all(request: web.Request) -> web.Response:
    params = request.query
    status, task_type = params.get("status") or None, params.get("task_type") or None
    if status is not None and status not in STATUSES:
        raise ValidationFailed("status", f"must be one of {', '.join(STATUSES)}")
    if task_type is not None:
        kind_of(task_type)  # a 422 naming task_type if there is no such kind
    q = params.get("q") or None
    if q is not None and NUL in q:
        raise ValidationFailed("q", NUL_REASON)
    query = TaskFilter(
        owner=principal_of(request).owner_filter(),
        status=status,
        task_type=task_type,
        q=q,
        group_id=query_int(params, "group_id", 0, 1, MAX_GROUP_ID)
        if params.get("group_id")
        else None,
        limit=query_int(params, "limit", 50, 1, 1000),
        offset=query_int(params, "offset", 0, 0, MAX_OFFSET),
    )
    return json_response(await list_tasks(request.app[POOL], query))


@routes.get("/api/schedule/tasks/{id}")
async def get_one(request: web.Request) -> web.Response:
    return json_response(await _visible_task(request, _task_id(request)))


@routes.put("/api/schedule/tasks/{id}")
async def update(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        patch = decode_body(body, TaskPatch)
    except ValidationFailed as exc:
        if exc.field == "task_type":
            raise ValidationFailed("task_type", "cannot be changed; create a new task") from None
        raise
    if all(getattr(patch, field) is UNSET for field in WRITABLE_FIELDS):
        raise ValidationFailed("body", f"give at least one of: {', '.join(WRITABLE_FIELDS)}")
    if not isinstance(patch.group_ids, UnsetType):
        await _require_groups(request, patch.group_ids)
    return await _task_command(request, body, lambda: UpdateTask(patch=patch, now=now()))


@routes.delete("/api/schedule/tasks/{id}")
async def delete(request: web.Request) -> web.Response:
    return await _task_command(request, b"", lambda: DeleteTask(now=now()), status=204)


@routes.post("/api/schedule/tasks/{id}/pause")
async def pause(request: web.Request) -> web.Response:
    return await _task_command(request, await request.read(), lambda: PauseTask(now=now()))


@routes.post("/api/schedule/tasks/{id}/resume")
async def resume(request: web.Request) -> web.Response:
    return await _task_command(request, await request.read(), lambda: ResumeTask(now=now()))


@routes.post("/api/schedule/tasks/{id}/execute")
async def execute(request: web.Request) -> web.Response:
    body = await request.read()
    principal = writer(request)
    task_id = _task_id(request)
    await _visible_task(request, task_id)

    async def run_now(call: IdempotentCall) -> StoredResponse:
        execution_id = call.derived_id("execution")
        command = ExecuteNow(execution_id=execution_id, now=now())
        pool = request.app[POOL]
        recorded = await recorded_once(
            pool,
            call,
            lambda: handle(
                pool,
                TASKS,
                task_id,
                command,
                metadata=metadata(request, principal),
                event_ids=call.event_ids(1),
                group=request.app[APPENDS],
            ),
        )
        await settled(request, recorded, ["tasks", "executions"])
        return StoredResponse(202, encode({"execution_id": execution_id}))

    return await respond_once(request, principal, body, run_now)


@routes.get("/api/schedule/tasks/{id}/executions")
async def executions(request: web.Request) -> web.Response:
    task_id = _task_id(request)
    await _visible_task(request, task_id)
    limit = query_int(request.query, "limit", 50, 1, 1000)
    offset = query_int(request.query, "offset", 0, 0, MAX_OFFSET)
    return json_response(await list_executions(request.app[POOL], task_id, limit, offset))


@routes.get("/api/schedule/tasks/{id}/events")
async def history(request: web.Request) -> web.Response:
    task_id = _task_id(request)
    recorded = await read_task_history(request.app[POOL], task_id)
    created = recorded[0].event if recorded else None
    if not isinstance(created, TaskCreated) or not principal_of(request).may_see(created.user_id):
        raise NotFound(f"task {task_id} does not exist")
    edits = task_changes([item.event for item in recorded])
    return json_response(
        {"items": [_entry(item, changes) for item, changes in zip(recorded, edits, strict=True)]}
    )


def _entry(recorded: RecordedEvent, changes: list[Change] | None) -> HistoryEntry:
    """The event's envelope; an edit's also lists each field's old and new value."""
    envelope = msgspec.structs.asdict(to_envelope(recorded))
    return HistoryEntry(**envelope, changes=changes)


async def _task_command(
    request: web.Request,
    body: bytes,
    make_command: Callable[[], TaskCommand],
    status: int = 200,
) -> web.Response:
    principal = writer(request)
    task_id = _task_id(request)
    await _visible_task(request, task_id)

    async def run(call: IdempotentCall) -> StoredResponse:
        pool = request.app[POOL]
        recorded = await recorded_once(
            pool,
            call,
            lambda: handle(
                pool,
                TASKS,
                task_id,
                make_command(),
                metadata=metadata(request, principal),
                event_ids=call.event_ids(1),
                group=request.app[APPENDS],
            ),
        )
        await settled(request, recorded, ["tasks"])
        if status == 204:
            return StoredResponse(204, b"")
        return StoredResponse(status, encode(await _visible_task(request, task_id)))

    return await respond_once(request, principal, body, run)


async def _require_groups(request: web.Request, group_ids: list[int]) -> None:
    """Group ids must name groups that exist now (devices, by contrast, may come later)."""
    missing = await missing_groups(request.app[POOL], group_ids)
    if missing:
        listed = ", ".join(str(group_id) for group_id in missing)
        raise ValidationFailed("group_ids", f"no device group has the id {listed}")


async def _visible_task(request: web.Request, task_id: str) -> Task:
    task = await request.app[TASK_READS].get(task_id)
    if task is None or not principal_of(request).may_see(task.user_id):
        raise NotFound(f"task {task_id} does not exist")
    return task


def _task_id(request: web.Request) -> str:
    raw = request.match_info["id"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFound(f"task {raw} does not exist") from None
