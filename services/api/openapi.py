"""The OpenAPI 3 document, generated from the msgspec types the views decode and encode."""

from __future__ import annotations

from typing import Any

import msgspec

from events.codec import Envelope
from projections.device_views import DeviceGroup, DevicePage, GroupPage
from projections.execution_views import ExecutionPage
from projections.stats import Stats
from projections.task_views import Task, TaskPage
from services.api.misc import PreviewRequest, PreviewResponse
from services.domain.group import GroupInput, GroupPatch
from services.domain.task_spec import TaskInput, TaskPatch


class ErrorDetail(msgspec.Struct):
    code: str
    message: str
    details: Any = None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class ExecutionAccepted(msgspec.Struct):
    execution_id: str


class EventList(msgspec.Struct):
    items: list[Envelope]


class Health(msgspec.Struct):
    status: str
    checks: dict[str, str] = {}


_TYPES: list[Any] = [
    TaskInput, TaskPatch, Task, TaskPage, ExecutionPage, EventList, ExecutionAccepted,
    PreviewRequest, PreviewResponse, Stats, DevicePage, GroupPage, GroupInput, GroupPatch,
    DeviceGroup, ErrorBody, Health,
]  # fmt: skip

_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_GROUP_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
_PAGE = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
]
_FILTERS = [
    {"name": "status", "in": "query", "schema": {"type": "string"}},
    {"name": "task_type", "in": "query", "schema": {"type": "string"}},
    {"name": "q", "in": "query", "schema": {"type": "string"}},
]

# (method, path, summary, request body type, success status, response type, parameters, open)
_ROUTES: list[tuple[str, str, str, Any, int, Any, list[dict[str, Any]], bool]] = [
    ("post", "/api/schedule/tasks", "Create a task", TaskInput, 201, Task, [], False),
    ("get", "/api/schedule/tasks", "List tasks", None, 200, TaskPage, _FILTERS + _PAGE, False),
    ("get", "/api/schedule/tasks/{id}", "Get a task", None, 200, Task, [_ID], False),
    ("put", "/api/schedule/tasks/{id}", "Update a task", TaskPatch, 200, Task, [_ID], False),
    ("delete", "/api/schedule/tasks/{id}", "Delete a task", None, 204, None, [_ID], False),
    ("post", "/api/schedule/tasks/{id}/pause", "Pause a task", None, 200, Task, [_ID], False),
    ("post", "/api/schedule/tasks/{id}/resume", "Resume a task", None, 200, Task, [_ID], False),
    ("post", "/api/schedule/tasks/{id}/execute", "Run a task now", None, 202, ExecutionAccepted,
     [_ID], False),
    ("get", "/api/schedule/tasks/{id}/executions", "A task's executions, newest first", None, 200,
     ExecutionPage, [_ID, *_PAGE], False),
    ("get", "/api/schedule/tasks/{id}/events", "A task's whole history", None, 200, EventList,
     [_ID], False),
    ("post", "/api/schedule/preview", "Preview fire times", PreviewRequest, 200, PreviewResponse,
     [], False),
    ("get", "/api/schedule/stats", "Task and execution counts", None, 200, Stats, [], False),
    ("get", "/api/devices", "The device registry", None, 200, DevicePage, [], False),
    ("get", "/api/groups", "Device groups", None, 200, GroupPage, [], False),
    ("post", "/api/groups", "Create a device group", GroupInput, 201, DeviceGroup, [], False),
    ("put", "/api/groups/{id}", "Update a device group", GroupPatch, 200, DeviceGroup,
     [_GROUP_ID], False),
    ("delete", "/api/groups/{id}", "Delete a device group", None, 204, None, [_GROUP_ID], False),
    ("get", "/healthz", "Liveness", None, 200, Health, [], True),
    ("get", "/readyz", "Readiness: database and NATS reachable", None, 200, Health, [], True),
    ("get", "/metrics", "Prometheus metrics, in the text exposition format", None, 200, None, [],
     True),
    ("get", "/api/openapi.json", "This OpenAPI document", None, 200, None, [], False),
]  # fmt: skip

_ERRORS = {
    "400": "Malformed body",
    "401": "Missing or invalid token",
    "403": "The role may not do this",
    "404": "Not found",
    "409": "State conflict",
    "413": "Body too large",
    "422": "Validation failed: the message names the field and why",
}


def openapi_document() -> dict[str, Any]:
    (refs, components) = msgspec.json.schema_components(
        _TYPES, ref_template="#/components/schemas/{name}"
    )
    schema_of = dict(zip(_TYPES, refs, strict=True))
    error = {"application/json": {"schema": schema_of[ErrorBody]}}
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, body, status, result, parameters, is_open in _ROUTES:
        responses: dict[str, Any] = {
            str(status): {"description": summary}
            | ({"content": {"application/json": {"schema": schema_of[result]}}} if result else {})
        }
        if not is_open:
            responses |= {
                code: {"description": text, "content": error} for code, text in _ERRORS.items()
            }
        operation: dict[str, Any] = {
            "summary": summary,
            "parameters": parameters,
            "responses": responses,
        }
        if body is not None:
            content = {"application/json": {"schema": schema_of[body]}}
            operation["requestBody"] = {"required": True, "content": content}
        if is_open:
            operation["security"] = []
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "DeployX Scheduler API", "version": "1.0.0"},
        "servers": [{"url": "/"}],
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
