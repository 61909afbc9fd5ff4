"""Task and group bodies are bounded and checked before anything is stored: paths that climb
out or are not absolute, package names a package manager would read as options, NUL bytes,
and strings and lists too long, each a 422 naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.api import (
    GROUPS,
    TASKS,
    assert_invalid,
    command_task,
    create_task,
    fetch_task,
    fresh_user,
    list_tasks,
    software_task,
    task_path,
)
from tests.stack import Client, Stack

FILE = "task_payload.file_payload"
SOFTWARE = "task_payload.software_payload"
COMMAND = "task_payload.command_payload"


def file_task(**payload: Any) -> dict[str, Any]:
    fields = {"file_id": "f-1", "destination": "/etc/app.conf"} | payload
    return command_task(task_type="file_deployment", task_payload={"file_payload": fields})


def package(**payload: Any) -> dict[str, Any]:
    fields = {"package": "nginx"} | payload
    return software_task(task_payload={"software_payload": fields})


def command(**payload: Any) -> dict[str, Any]:
    fields = {"command": "uptime"} | payload
    return command_task(task_payload={"command_payload": fields})


INVALID: dict[str, tuple[dict[str, Any], str, str]] = {
    "destination climbing out": (
        file_task(destination="/etc/app/../../root/.ssh/authorized_keys"),
        f"{FILE}.destination",
        "..",
    ),
    "destination ending in ..": (file_task(destination="/etc/.."), f"{FILE}.destination", ".."),
    "relative destination": (file_task(destination="etc/app.conf"), f"{FILE}.destination", "/"),
    "destination with NUL": (file_task(destination="/etc/a\x00b"), f"{FILE}.destination", "NUL"),
    "destination over 4096 bytes": (
        file_task(destination="/" + "é" * 2048),
        f"{FILE}.destination",
        "4096 bytes",
    ),
    "file id with a slash": (file_task(file_id="../f"), f"{FILE}.file_id", ""),
    "owner as an option": (file_task(owner="-R"), f"{FILE}.owner", ""),
    "owner with a space": (file_task(owner="root wheel"), f"{FILE}.owner", ""),
    "package as an option": (
        package(package="--allow-unauthenticated"),
        f"{SOFTWARE}.package",
        "-",
    ),
    "package with a space": (package(package="nginx curl"), f"{SOFTWARE}.package", ""),
    "package with a semicolon": (package(package="nginx;reboot"), f"{SOFTWARE}.package", ""),
    "package with $()": (package(package="$(reboot)"), f"{SOFTWARE}.package", ""),
    "package with a newline": (package(package="nginx\nreboot"), f"{SOFTWARE}.package", ""),
    "package with NUL": (package(package="nginx\x00"), f"{SOFTWARE}.package", ""),
    "package over 256 characters": (package(package="a" * 257), f"{SOFTWARE}.package", "256"),
    "version as an option": (package(version="-1"), f"{SOFTWARE}.version", ""),
    "version with a space": (package(version="1.0 || reboot"), f"{SOFTWARE}.version", ""),
    "version with a backtick": (package(version="1`id`"), f"{SOFTWARE}.version", ""),
    "manager with a slash": (package(manager="../apt"), f"{SOFTWARE}.manager", ""),
    "command with NUL": (command(command="ls\x00-la"), f"{COMMAND}.command", "NUL"),
    "env name with =": (command(env={"A=B": "1"}), f"{COMMAND}.env", ""),
    "env value with NUL": (command(env={"A": "x\x00"}), f"{COMMAND}.env", ""),
    "too many env variables": (
        command(env={f"V{n}": "1" for n in range(257)}),
        f"{COMMAND}.env",
        "256",
    ),
    "working_dir over 4096 bytes": (
        command(working_dir="/" + "d" * 4096),
        f"{COMMAND}.working_dir",
        "4096",
    ),
    "10,001 devices": (
        command_task(device_ids=[f"d{n}" for n in range(10_001)]),
        "device_ids",
        "must hold at most 10,000 items",
    ),
    "a device id over 128 characters": (
        command_task(device_ids=["d" * 129]),
        "device_ids.0",
        "must hold at most 128 characters",
    ),
    "a device id with a wildcard": (command_task(device_ids=["dev-*"]), "device_ids.0", ""),
    "1,001 groups": (
        command_task(group_ids=list(range(1, 1002))),
        "group_ids",
        "must hold at most 1000 items",
    ),
    "name over 200 characters": (
        command_task(name="n" * 201),
        "name",
        "must hold at most 200 characters",
    ),
}


@pytest.mark.parametrize(("body", "field", "why"), INVALID.values(), ids=INVALID.keys())
async def test_an_unsafe_or_unbounded_create_is_422_naming_the_field(
    operator: Client, body: dict[str, Any], field: str, why: str
) -> None:
    response = await operator.post(TASKS, body)

    assert_invalid(response, field, why)
    assert (await list_tasks(operator))["total"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"task_payload": {"command_payload": {"command": "a\x00"}}}, f"{COMMAND}.command"),
        ({"device_ids": [f"d{n}" for n in range(10_001)]}, "device_ids"),
    ],
    ids=["NUL in the command", "10,001 devices"],
)
async def test_an_unsafe_update_is_422_and_changes_nothing(
    operator: Client, body: dict[str, Any], field: str
) -> None:
    task = await create_task(operator)

    assert_invalid(await operator.put(task_path(task["id"]), body), field)
    assert await fetch_task(operator, task["id"]) == task


VALID = {
    "apt package with epoch version": package(package="libc6", version="2:2.36-9+deb12u4"),
    "pip package": package(package="Django", version="4.2.11", manager="pip"),
    "dnf package": package(package="python3.11-pip", version="22.3.1-4.el9", manager="dnf"),
    "a tilde version": package(package="g++", version="1.0~rc1"),
    "a file with an owner and group": file_task(destination="/srv/app/..cfg", owner="www-data:adm"),
    "a numeric owner": file_task(owner="1000:1000"),
    "10,000 devices, one of 128 characters": command_task(
        device_ids=["d" * 128] + [f"d{n}" for n in range(9_999)]
    ),
}


@pytest.mark.parametrize("body", VALID.values(), ids=VALID.keys())
async def test_what_package_managers_and_paths_take_is_accepted(
    operator: Client, body: dict[str, Any]
) -> None:
    status, task = await operator.post(TASKS, body)

    assert status == 201, task


@pytest.fixture
async def admin(shared_stack: Stack) -> Client:
    return await fresh_user(shared_stack, "admin")


@pytest.mark.parametrize(
    ("body", "field", "why"),
    [
        ({"name": "g" * 201}, "name", "must hold at most 200 characters"),
        (
            {"name": "g", "device_ids": [f"d{n}" for n in range(10_001)]},
            "device_ids",
            "must hold at most 10,000 items",
        ),
        (
            {"name": "g", "device_ids": ["d" * 129]},
            "device_ids.0",
            "must hold at most 128 characters",
        ),
    ],
    ids=["name over 200", "10,001 devices", "a device id over 128"],
)
async def test_an_unbounded_group_is_422_naming_the_field(
    admin: Client, body: dict[str, Any], field: str, why: str
) -> None:
    _, before = await admin.get(GROUPS)

    assert_invalid(await admin.post(GROUPS, body), field, why)
    assert (await admin.get(GROUPS))[1] == before
