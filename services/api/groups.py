"""Device registry and device group routes."""

from __future__ import annotations

from aiohttp import web

from projections.device_views import (
    get_group,
    group_named,
    list_devices,
    list_groups,
    tasks_using_group,
)
from services.api.idempotency import IdempotentCall, StoredResponse, recorded_once
from services.api.keys import POOL, principal_of
from services.api.responses import decode_body, encode, json_response
from services.api.writes import admin, metadata, now, respond_once, settled
from services.domain.errors import Conflict, NotFound, ValidationFailed
from services.domain.group import (
    CreateGroup,
    DeleteGroup,
    GroupCommand,
    GroupInput,
    GroupPatch,
    UpdateGroup,
    stream_id,
)
from services.domain.task_spec import MAX_GROUP_ID
from services.engine.handler import GROUPS, handle

routes = web.RouteTableDef()


@routes.get("/api/devices")
async def devices(request: web.Request) -> web.Response:
    return json_response(await list_devices(request.app[POOL]))


@routes.get("/api/groups")
async def groups(request: web.Request) -> web.Response:
    return json_response(await list_groups(request.app[POOL]))


@routes.post("/api/groups")
async def create_group(request: web.Request) -> web.Response:
    principal = admin(request)
    body = await request.read()
    group = decode_body(body, GroupInput)
    pool = request.app[POOL]

    async def create(call: IdempotentCall) -> StoredResponse:
        await _name_free(request, group.name, None)
        group_id = int(await pool.fetchval("SELECT nextval('device_group_ids')"))
        command = CreateGroup(group=group, user_id=principal.user, now=now())
        return await _run(request, group_id, command, call, status=201)

    return await respond_once(request, principal, body, create)


@routes.put("/api/groups/{id}")
async def update_group(request: web.Request) -> web.Response:
    principal = admin(request)
    body = await request.read()
    patch = decode_body(body, GroupPatch)
    command = UpdateGroup(patch=patch, now=now())
    group_id = await _existing_group_id(request)

    async def update(call: IdempotentCall) -> StoredResponse:
        if isinstance(patch.name, str):
            await _name_free(request, patch.name, group_id)
        return await _run(request, group_id, command, call)

    return await respond_once(request, principal, body, update)


@routes.delete("/api/groups/{id}")
async def delete_group(request: web.Request) -> web.Response:
    principal = admin(request)
    command = DeleteGroup(now=now())
    group_id = await _existing_group_id(request)
    force = _flag(request, "force")

    async def delete(call: IdempotentCall) -> StoredResponse:
        if not force:
            users = await tasks_using_group(request.app[POOL], group_id)
            if users:
                raise Conflict(
                    f"group {group_id} is a target of {len(users)} task(s): change them first, "
                    "or delete with ?force=true (they keep its id and find no devices in it)",
                    {"task_ids": users},
                )
        return await _run(request, group_id, command, call, status=204)

    return await respond_once(request, principal, b"", delete)


async def _run(
    request: web.Request,
    group_id: int,
    command: GroupCommand,
    call: IdempotentCall,
    status: int = 200,
) -> StoredResponse:
    pool = request.app[POOL]
    recorded = await recorded_once(
        pool,
        call,
        lambda: handle(
            pool,
            GROUPS,
            stream_id(group_id),
            command,
            metadata=metadata(request, principal_of(request)),
            event_ids=call.event_ids(1),
            new_stream=isinstance(command, CreateGroup),
        ),
    )
    await settled(request, recorded, ["devices"])
    if status == 204:
        return StoredResponse(204, b"")
    # A retried create finds the group its first try made, under that try's id.
    group = await get_group(pool, int(recorded[0].stream_id.removeprefix("group-")))
    return StoredResponse(status, encode(group))


async def _existing_group_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    # isdigit() alone takes "²", which int() refuses; no id lies past PostgreSQL's integer.
    valid = raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_GROUP_ID
    if not valid or await get_group(request.app[POOL], int(raw)) is None:
        raise NotFound(f"group {raw} does not exist")
    return int(raw)


async def _name_free(request: web.Request, name: str, group_id: int | None) -> None:
    """Group names are unique (ignoring case and outer spaces): two "web" groups would be
    told apart by nobody choosing targets."""
    other = await group_named(request.app[POOL], name)
    if other is not None and other != group_id:
        raise Conflict(
            f"name: a group named {name.strip()!r} exists already (group {other})",
            {"field": "name", "reason": "a group with this name exists already", "group_id": other},
        )


def _flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false"):
        raise ValidationFailed(name, "must be true or false")
    return raw == "true"
