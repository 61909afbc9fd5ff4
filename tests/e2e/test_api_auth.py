"""Who may do what: bearer tokens (401), roles (403), and owners (a non-admin never sees another
user's tasks: 404, as if they did not exist)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.e2e.api import (
    GROUPS,
    TASKS,
    assert_error,
    command_task,
    create_task,
    event_types,
    fetch_task,
    fresh_user,
    ids,
    list_tasks,
    task_path,
    unknown_task_id,
)
from tests.stack import Stack

SOME_TASK = unknown_task_id()
# Every /api route of the contract that needs a token, with a body where it takes one.
API_ROUTES: list[tuple[str, str, Any]] = [
    ("POST", TASKS, command_task()),
    ("GET", TASKS, None),
    ("GET", task_path(SOME_TASK), None),
    ("PUT", task_path(SOME_TASK), {"name": "x"}),
    ("DELETE", task_path(SOME_TASK), None),
    ("POST", task_path(SOME_TASK, "pause"), None),
    ("POST", task_path(SOME_TASK, "resume"), None),
    ("POST", task_path(SOME_TASK, "execute"), None),
    ("GET", task_path(SOME_TASK, "executions"), None),
    ("GET", task_path(SOME_TASK, "events"), None),
    ("POST", "/api/schedule/preview", {"recurrence_type": "daily", "recurrence_config": {}}),
    ("GET", "/api/openapi.json", None),
    ("GET", "/api/me", None),
    ("GET", "/api/schedule/stats", None),
    ("GET", "/api/devices", None),
    ("GET", GROUPS, None),
    ("POST", GROUPS, {"name": "web"}),
    ("PUT", f"{GROUPS}/1", {"name": "web"}),
    ("DELETE", f"{GROUPS}/1", None),
]
TASK_WRITES: list[tuple[str, str, Any]] = [
    ("PUT", "", {"name": "taken over"}),
    ("POST", "pause", None),
    ("POST", "resume", None),
    ("POST", "execute", None),
    ("DELETE", "", None),
]


def route_id(route: tuple[str, str, Any]) -> str:
    return f"{route[0]} {route[1].replace(SOME_TASK, '{id}')}"


async def with_authorization(stack: Stack, header: str) -> tuple[int, Any]:
    """GET the task list sending exactly this Authorization header."""
    async with stack.session.get(stack.base_url + TASKS, headers={"Authorization": header}) as r:
        return r.status, await r.json()


# --- 401 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), API_ROUTES, ids=map(route_id, API_ROUTES))
async def test_every_api_route_needs_a_token(
    shared_stack: Stack, method: str, path: str, body: Any
) -> None:
    assert_error(await shared_stack.anonymous().call(method, path, body), 401)


@pytest.mark.parametrize(
    "header", ["Bearer dx_not-a-real-token", "Bearer ", "Basic YWxpY2U6c2VjcmV0", "dx_abc"]
)
async def test_a_bad_authorization_header_is_401(shared_stack: Stack, header: str) -> None:
    assert_error(await with_authorization(shared_stack, header), 401)


async def test_a_token_is_only_good_with_the_bearer_scheme(shared_stack: Stack) -> None:
    token = (await fresh_user(shared_stack, "operator")).token

    assert (await with_authorization(shared_stack, f"Bearer {token}"))[0] == 200
    assert_error(await with_authorization(shared_stack, f"Basic {token}"), 401)
    assert_error(await with_authorization(shared_stack, f"{token}"), 401)


@pytest.mark.parametrize("role", ["admin", "operator", "viewer"])
async def test_me_names_the_tokens_user_and_role(shared_stack: Stack, role: str) -> None:
    name = f"{role}-{uuid.uuid4().hex[:8]}"
    client = await shared_stack.client(name, role)

    status, me = await client.get("/api/me")

    assert status == 200, me
    assert me == {"user": name, "role": role}


# --- viewers read ---------------------------------------------------------------------------------


async def test_a_viewer_may_not_create_a_task(shared_stack: Stack) -> None:
    viewer = await fresh_user(shared_stack, "viewer")

    assert_error(await viewer.post(TASKS, command_task()), 403)
    assert await list_tasks(viewer) == {"items": [], "total": 0}


async def test_a_viewer_reads_its_users_tasks_but_may_not_change_them(shared_stack: Stack) -> None:
    operator = await shared_stack.client("vera", "operator")
    viewer = await shared_stack.client("vera", "viewer")
    task = await create_task(operator)

    assert ids((await list_tasks(viewer))["items"]) == [task["id"]]
    assert await fetch_task(viewer, task["id"]) == task
    assert (await viewer.get(task_path(task["id"], "executions")))[0] == 200
    assert await event_types(viewer, task["id"]) == ["TaskCreated"]
    for method, action, body in TASK_WRITES:
        assert_error(await viewer.call(method, task_path(task["id"], action), body), 403)
    assert await fetch_task(viewer, task["id"]) == task
    assert await event_types(viewer, task["id"]) == ["TaskCreated"]


async def test_a_viewer_reads_stats_devices_groups_and_previews(shared_stack: Stack) -> None:
    viewer = await fresh_user(shared_stack, "viewer")
    preview = {"recurrence_type": "daily", "recurrence_config": {"time": "03:00"}}

    assert (await viewer.get("/api/schedule/stats"))[0] == 200
    assert (await viewer.get("/api/devices"))[0] == 200
    assert (await viewer.get(GROUPS))[0] == 200
    assert (await viewer.post("/api/schedule/preview", preview))[0] == 200


# --- operators own their tasks ------------------------------------------------------------------


async def test_an_operator_never_sees_another_users_task(shared_stack: Stack) -> None:
    owner = await fresh_user(shared_stack, "operator")
    other = await fresh_user(shared_stack, "operator")
    task = await create_task(owner)

    assert await list_tasks(other) == {"items": [], "total": 0}
    assert (await list_tasks(other, "q=apt"))["total"] == 0
    for path in (
        task_path(task["id"]),
        *(task_path(task["id"], a) for a in ("executions", "events")),
    ):
        assert_error(await other.get(path), 404)
    stats = (await other.get("/api/schedule/stats"))[1]
    assert stats["total_tasks"] == 0


async def test_an_operator_may_not_change_another_users_task(shared_stack: Stack) -> None:
    owner = await fresh_user(shared_stack, "operator")
    other = await fresh_user(shared_stack, "operator")
    task = await create_task(owner)

    for method, action, body in TASK_WRITES:
        assert_error(await other.call(method, task_path(task["id"], action), body), 404)

    assert await fetch_task(owner, task["id"]) == task
    assert await event_types(owner, task["id"]) == ["TaskCreated"]


async def test_the_events_of_a_deleted_task_stay_private(shared_stack: Stack) -> None:
    owner = await fresh_user(shared_stack, "operator")
    other = await fresh_user(shared_stack, "operator")
    task = await create_task(owner)
    assert (await owner.delete(task_path(task["id"])))[0] == 204

    assert await event_types(owner, task["id"]) == ["TaskCreated", "TaskDeleted"]
    assert_error(await other.get(task_path(task["id"], "events")), 404)


# --- admins do everything -----------------------------------------------------------------------


async def test_an_admin_sees_and_changes_every_users_task(shared_stack: Stack) -> None:
    owner = await fresh_user(shared_stack, "operator")
    admin_name = f"admin-{uuid.uuid4().hex[:8]}"
    admin = await shared_stack.client(admin_name, "admin")
    task = await create_task(owner)
    path = task_path(task["id"])

    assert task["id"] in ids((await list_tasks(admin, "limit=1000"))["items"])
    assert await fetch_task(admin, task["id"]) == task
    status, renamed = await admin.put(path, {"name": "renamed by an admin"})
    assert (status, renamed["name"], renamed["user_id"]) == (
        200,
        "renamed by an admin",
        task["user_id"],
    )
    assert (await admin.post(f"{path}/pause"))[1]["status"] == "paused"
    assert (await admin.post(f"{path}/resume"))[1]["status"] == "pending"
    assert (await admin.post(f"{path}/execute"))[0] == 202
    assert await fetch_task(owner, task["id"]) == await fetch_task(admin, task["id"])
    assert (await admin.delete(path))[0] == 204

    assert (await owner.get(path))[0] == 404
    status, history = await owner.get(f"{path}/events")
    assert status == 200, history
    assert [(event["type"], event["metadata"]["user"]) for event in history["items"]] == [
        ("TaskCreated", task["user_id"]),
        ("TaskUpdated", admin_name),
        ("TaskPaused", admin_name),
        ("TaskResumed", admin_name),
        ("TaskDue", admin_name),
        ("TaskDeleted", admin_name),
    ]


async def test_a_task_belongs_to_the_user_who_created_it(shared_stack: Stack) -> None:
    admin = await shared_stack.client("ada", "admin")

    task = await create_task(admin)

    assert task["user_id"] == "ada"


# --- groups are an admin's ----------------------------------------------------------------------


@pytest.mark.parametrize("role", ["operator", "viewer"])
async def test_only_an_admin_may_write_groups(shared_stack: Stack, role: str) -> None:
    admin = await fresh_user(shared_stack, "admin")
    body = {"name": f"web {role}", "device_ids": ["local-1"]}  # names are unique
    status, group = await admin.post(GROUPS, body)
    assert status == 201, group
    user = await fresh_user(shared_stack, role)
    path = f"{GROUPS}/{group['id']}"

    assert_error(await user.post(GROUPS, {"name": "db"}), 403)
    assert_error(await user.put(path, {"name": "renamed"}), 403)
    assert_error(await user.delete(path), 403)

    status, groups = await user.get(GROUPS)
    assert status == 200, groups
    [listed] = [item for item in groups["items"] if item["id"] == group["id"]]
    assert (listed["name"], listed["device_ids"]) == (body["name"], ["local-1"])
