"""The rest of the API: device groups, the device registry, stats, schedule preview, health,
readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from tests.e2e.api import (
    GROUPS,
    assert_error,
    assert_invalid,
    command_task,
    create_task,
    fetch_task,
    instant,
    software_task,
    task_path,
)
from tests.stack import Client, Stack

PREVIEW = "/api/schedule/preview"
BERLIN = ZoneInfo("Europe/Berlin")
# Every path and method of the contract's HTTP API table but `GET /` (the console).
CONTRACT_ROUTES = [
    ("post", "/api/schedule/tasks"),
    ("get", "/api/schedule/tasks"),
    ("get", "/api/schedule/tasks/{id}"),
    ("put", "/api/schedule/tasks/{id}"),
    ("delete", "/api/schedule/tasks/{id}"),
    ("post", "/api/schedule/tasks/{id}/pause"),
    ("post", "/api/schedule/tasks/{id}/resume"),
    ("post", "/api/schedule/tasks/{id}/execute"),
    ("get", "/api/schedule/tasks/{id}/executions"),
    ("get", "/api/schedule/tasks/{id}/events"),
    ("post", "/api/schedule/preview"),
    ("get", "/api/schedule/stats"),
    ("get", "/api/devices"),
    ("get", "/api/groups"),
    ("post", "/api/groups"),
    ("put", "/api/groups/{id}"),
    ("delete", "/api/groups/{id}"),
    ("post", "/api/files"),
    ("get", "/api/openapi.json"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
]


# --- device groups ------------------------------------------------------------------------------


async def create_group(admin: Client, name: str, device_ids: list[str]) -> dict[str, Any]:
    status, group = await admin.post(GROUPS, {"name": name, "device_ids": device_ids})
    assert status == 201, group
    return group  # type: ignore[no-any-return]


async def listed_groups(client: Client) -> list[dict[str, Any]]:
    """The groups as the list shows them, cut to the contract's fields."""
    status, page = await client.get(GROUPS)
    assert status == 200, page
    return [{key: group[key] for key in ("id", "name", "device_ids")} for group in page["items"]]


async def test_groups_are_created_listed_updated_and_deleted(stack: Stack) -> None:
    admin = await stack.client("ada", "admin")
    assert await listed_groups(admin) == []

    web = await create_group(admin, "web", ["local-1", "local-2"])

    assert isinstance(web["id"], int) and not isinstance(web["id"], bool)
    assert (web["name"], web["device_ids"]) == ("web", ["local-1", "local-2"])
    assert await listed_groups(admin) == [
        {"id": web["id"], "name": "web", "device_ids": web["device_ids"]}
    ]

    status, renamed = await admin.put(f"{GROUPS}/{web['id']}", {"name": "frontends"})
    assert (status, renamed["name"], renamed["device_ids"]) == (
        200,
        "frontends",
        ["local-1", "local-2"],
    )
    status, moved = await admin.put(f"{GROUPS}/{web['id']}", {"device_ids": ["local-3"]})
    assert (status, moved["name"], moved["device_ids"]) == (200, "frontends", ["local-3"])
    db = await create_group(admin, "db", [])
    assert await listed_groups(admin) == [
        {"id": web["id"], "name": "frontends", "device_ids": ["local-3"]},
        {"id": db["id"], "name": "db", "device_ids": []},
    ]

    assert await admin.delete(f"{GROUPS}/{web['id']}") == (204, None)
    assert await listed_groups(admin) == [{"id": db["id"], "name": "db", "device_ids": []}]
    assert_error(await admin.put(f"{GROUPS}/{web['id']}", {"name": "again"}), 404)
    assert_error(await admin.delete(f"{GROUPS}/{web['id']}"), 404)


@pytest.mark.parametrize("group_id", ["999999", "web", "-1"])
async def test_a_missing_group_is_404(shared_stack: Stack, group_id: str) -> None:
    admin = await shared_stack.client("ada", "admin")

    assert_error(await admin.put(f"{GROUPS}/{group_id}", {"name": "x"}), 404)
    assert_error(await admin.delete(f"{GROUPS}/{group_id}"), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"device_ids": ["local-1"]}, "name"),
        ({"name": "web", "device_ids": ["local-1", 2]}, "device_ids"),
        ({"name": "web", "owner": "ada"}, "owner"),
    ],
)
async def test_an_invalid_group_is_422_naming_the_field(
    shared_stack: Stack, body: dict[str, Any], field: str
) -> None:
    admin = await shared_stack.client("ada", "admin")

    assert_invalid(await admin.post(GROUPS, body), field)


async def test_a_task_targets_groups(shared_stack: Stack) -> None:
    admin = await shared_stack.client("ada", "admin")
    group = await create_group(admin, "canaries", ["local-1"])

    task = await create_task(admin, command_task(device_ids=[], group_ids=[group["id"]]))

    assert (await fetch_task(admin, task["id"]))["group_ids"] == [group["id"]]


async def test_a_group_in_use_is_deleted_only_with_force(shared_stack: Stack) -> None:
    admin = await shared_stack.client("ada", "admin")
    group = await create_group(admin, f"in use {uuid.uuid4().hex[:8]}", ["local-1"])
    first = await create_task(admin, command_task(device_ids=[], group_ids=[group["id"]]))
    second = await create_task(admin, command_task(group_ids=[group["id"]]))
    path = f"{GROUPS}/{group['id']}"

    status, body = await admin.delete(path)
    assert_error((status, body), 409)
    assert body["error"]["details"]["task_ids"] == [first["id"], second["id"]]
    assert "force=true" in body["error"]["message"]
    # The console lists them before it asks: the tasks list filters by group.
    status, users = await admin.get(f"/api/schedule/tasks?group_id={group['id']}")
    assert {task["id"] for task in users["items"]} == {first["id"], second["id"]}
    assert any(item["id"] == group["id"] for item in (await admin.get(GROUPS))[1]["items"])

    assert_invalid(await admin.delete(f"{path}?force=yes"), "force")
    assert await admin.delete(f"{path}?force=true") == (204, None)
    assert all(item["id"] != group["id"] for item in (await admin.get(GROUPS))[1]["items"])
    # The tasks keep the id, and find no devices in it.
    assert (await fetch_task(admin, first["id"]))["group_ids"] == [group["id"]]


async def test_an_unused_group_is_deleted_without_force(shared_stack: Stack) -> None:
    admin = await shared_stack.client("ada", "admin")
    group = await create_group(admin, f"unused {uuid.uuid4().hex[:8]}", [])

    assert await admin.delete(f"{GROUPS}/{group['id']}") == (204, None)


async def test_group_names_are_unique(shared_stack: Stack) -> None:
    admin = await shared_stack.client("ada", "admin")
    name = f"Web {uuid.uuid4().hex[:8]}"
    web = await create_group(admin, name, ["local-1"])

    # The same name, in other case and with spaces around it, is the same name.
    status, body = await admin.post(GROUPS, {"name": f"  {name.upper()} ", "device_ids": []})
    assert_error((status, body), 409)
    assert body["error"]["details"]["field"] == "name"
    assert body["error"]["details"]["group_id"] == web["id"]
    other = await create_group(admin, f"db {uuid.uuid4().hex[:8]}", [])
    assert_error(await admin.put(f"{GROUPS}/{other['id']}", {"name": name}), 409)
    # Keeping its own name is no clash; nor is a group renamed free.
    status, same = await admin.put(f"{GROUPS}/{web['id']}", {"name": name, "device_ids": []})
    assert (status, same["name"]) == (200, name)
    status, _ = await admin.put(f"{GROUPS}/{web['id']}", {"name": f"{name} old"})
    assert status == 200
    assert (await admin.put(f"{GROUPS}/{other['id']}", {"name": name}))[0] == 200


# --- devices and stats ---------------------------------------------------------------------------


async def test_the_device_registry_starts_empty(stack: Stack) -> None:
    viewer = await stack.client("vic", "viewer")

    assert await viewer.get("/api/devices") == (200, {"items": [], "total": 0})


def counts(stats: dict[str, Any], key: str) -> dict[str, int]:
    return {name: count for name, count in stats[key].items() if count}


async def stats_of(client: Client) -> dict[str, Any]:
    status, stats = await client.get("/api/schedule/stats")
    assert status == 200, stats
    return stats  # type: ignore[no-any-return]


async def test_stats_count_tasks_by_status_and_type_per_user(stack: Stack) -> None:
    bob = await stack.client("bob", "operator")
    carol = await stack.client("carol", "operator")
    admin = await stack.client("ada", "admin")
    await create_task(bob, command_task())
    paused = await create_task(bob, command_task(name="paused"))
    await create_task(bob, software_task())
    await create_task(
        carol,
        command_task(
            task_type="file_deployment",
            task_payload={"file_payload": {"file_id": "f-1", "destination": "/etc/app.conf"}},
        ),
    )
    assert (await bob.post(task_path(paused["id"], "pause")))[0] == 200

    mine, everyone = await stats_of(bob), await stats_of(admin)

    assert mine["total_tasks"] == 3
    assert counts(mine, "by_status") == {"pending": 2, "paused": 1}
    assert counts(mine, "by_type") == {"command": 2, "software_deployment": 1}
    assert (await stats_of(carol))["total_tasks"] == 1
    assert everyone["total_tasks"] == 4
    assert counts(everyone, "by_status") == {"pending": 3, "paused": 1}
    assert counts(everyone, "by_type") == {
        "command": 2,
        "software_deployment": 1,
        "file_deployment": 1,
    }
    for stats in (mine, everyone):
        assert (
            stats["executions_total"],
            stats["executions_success"],
            stats["executions_failed"],
        ) == (0, 0, 0)
        assert isinstance(stats["success_rate"], int | float)


# --- schedule preview ---------------------------------------------------------------------------


async def preview(client: Client, body: dict[str, Any]) -> list[datetime]:
    status, answer = await client.post(PREVIEW, body)
    assert status == 200, answer
    assert set(answer) == {"times"}, answer
    return [instant(text) for text in answer["times"]]


def gaps(times: list[datetime]) -> set[timedelta]:
    return {later - earlier for earlier, later in pairwise(times)}


def weekly_walls(
    start: date, weekdays: set[int], at: time, zone: ZoneInfo, n: int
) -> list[datetime]:
    """The first n wall times `at` on `weekdays` (Python's, 0 = Monday) from `start` on."""
    days = (start + timedelta(days=offset) for offset in range(7 * n + 7))
    return [datetime.combine(day, at, tzinfo=zone) for day in days if day.weekday() in weekdays][:n]


async def test_preview_gives_ten_times_by_default(operator: Client) -> None:
    after = datetime(2031, 5, 4, 12, 0, tzinfo=UTC)
    body = {
        "recurrence_type": "daily",
        "recurrence_config": {"time": "14:00"},
        "after": after.isoformat(),
    }

    times = await preview(operator, body)

    assert times == [datetime(2031, 5, 4, 14, 0, tzinfo=UTC) + timedelta(days=n) for n in range(10)]


async def test_preview_follows_wall_clock_time_across_daylight_saving(operator: Client) -> None:
    # Berlin moves its clocks forward on 2031-03-30: 09:00 stays 09:00, its offset changes.
    after = datetime(2031, 3, 20, tzinfo=BERLIN)
    body = {
        "recurrence_type": "weekly",
        "recurrence_config": {"time": "09:00", "days": [1, 3, 5], "timezone": "Europe/Berlin"},
        "after": after.isoformat(),
        "count": 6,
    }

    times = await preview(operator, body)

    assert times == weekly_walls(after.date(), {0, 2, 4}, time(9), BERLIN, 6)
    assert {t.astimezone(BERLIN).utcoffset() for t in times} == {
        timedelta(hours=1),
        timedelta(hours=2),
    }


async def test_preview_defaults_to_after_now(operator: Client) -> None:
    before = datetime.now(UTC)

    times = await preview(
        operator, {"recurrence_type": "interval", "recurrence_config": {"every_seconds": 60}}
    )

    assert len(times) == 10
    assert before < times[0]
    assert gaps(times) == {timedelta(seconds=60)}


async def test_preview_gives_up_to_1000_times(operator: Client) -> None:
    body = {
        "recurrence_type": "custom",
        "recurrence_config": {"cron": "*/5 * * * *"},
        "count": 1000,
    }

    times = await preview(operator, body)

    assert len(times) == 1000
    assert gaps(times) == {timedelta(minutes=5)}


async def test_preview_of_a_one_time_schedule_has_one_time(operator: Client) -> None:
    run_at = datetime(2031, 1, 2, 3, 4, tzinfo=UTC)
    body = {"recurrence_type": "once", "recurrence_config": {"run_at": run_at.isoformat()}}

    assert await preview(operator, body) == [run_at]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"recurrence_type": "daily", "recurrence_config": {"time": "09:00"}, "count": 1001},
            "count",
        ),
        ({"recurrence_type": "daily", "recurrence_config": {"time": "09:00"}, "count": 0}, "count"),
        (
            {"recurrence_type": "custom", "recurrence_config": {"cron": "0 25 * * *"}},
            "recurrence_config.cron",
        ),
        (
            {"recurrence_type": "daily", "recurrence_config": {"time": "25:00"}},
            "recurrence_config.time",
        ),
        ({"recurrence_type": "yearly", "recurrence_config": {}}, "recurrence_type"),
        (
            {"recurrence_type": "daily", "recurrence_config": {"time": "09:00"}, "after": "soon"},
            "after",
        ),
    ],
)
async def test_an_invalid_preview_is_422_naming_the_field(
    operator: Client, body: dict[str, Any], field: str
) -> None:
    assert_invalid(await operator.post(PREVIEW, body), field)


async def test_preview_validates_exactly_as_create(operator: Client) -> None:
    schedule = {"recurrence_type": "weekly", "recurrence_config": {"time": "9:60", "days": [1]}}

    refused_preview = await operator.post(PREVIEW, schedule)
    refused_create = await operator.post("/api/schedule/tasks", software_task(**schedule))

    assert_invalid(refused_preview, "recurrence_config.time")
    assert refused_preview == refused_create


# --- health, readiness, metrics, OpenAPI --------------------------------------------------------


async def test_health_and_readiness_need_no_token(shared_stack: Stack) -> None:
    anonymous = shared_stack.anonymous()

    assert (await anonymous.get("/healthz"))[0] == 200
    status, ready = await anonymous.get("/readyz")
    assert status == 200, ready
    assert ready["checks"] == {"database": "ok", "nats": "ok", "consumers": "ok"}


async def test_metrics_count_http_requests(shared_stack: Stack) -> None:
    anonymous = shared_stack.anonymous()
    assert (await anonymous.get("/healthz"))[0] == 200

    status, text = await anonymous.get("/metrics")

    assert status == 200
    assert isinstance(text, str)
    assert "deployx_http_requests_total" in text
    assert any(
        line.startswith("deployx_http_requests_total{") and 'route="/healthz"' in line
        for line in text.splitlines()
    )


async def test_openapi_is_a_valid_3_1_document_of_every_contract_route(operator: Client) -> None:
    status, document = await operator.get("/api/openapi.json")

    assert status == 200, document
    assert document["openapi"].startswith("3.1")
    validate(document, cls=OpenAPIV31SpecValidator)
    described = {(method, path) for path, item in document["paths"].items() for method in item}
    assert [route for route in CONTRACT_ROUTES if route not in described] == []
