"""The OpenAPI 3 document, generated from the msgspec types the views decode and encode."""

from __future__ import annotations

from typing import Any

import msgspec

from projections.device_views import DeviceGroup, DevicePage, GroupPage
from projections.execution_views import Execution, ExecutionPage
from projections.stats import Stats
from projections.task_views import Task, TaskPage
from services.api.admin import DeadLetterPage, RejectedMessagePage
from services.api.executions import STATUSES as RUN_STATUSES
from services.api.executions import TRIGGERS, CancelRequest
from services.api.files import StoredFile
from services.api.idempotency import MAX_KEY_LENGTH
from services.api.kinds_openapi import PAYLOAD_TYPES, describe_task_payloads
from services.api.misc import PreviewRequest, PreviewResponse
from services.api.tasks import MAX_OFFSET, STATUSES
from services.api.trust_openapi import ROUTES as TRUST_ROUTES
from services.api.trust_openapi import TYPES as TRUST_TYPES
from services.domain.group import GroupInput, GroupPatch
from services.domain.kinds import TASK_TYPES
from services.domain.run_requests import RerunInput, RunInput
from services.domain.task_changes import HistoryEntry
from services.domain.task_spec import MAX_GROUP_ID, TaskInput, TaskPatch
from services.infra.auth import Principal
from services.infra.dead_letters import DeadLetter


class ErrorDetail(msgspec.Struct):
    code: str
    message: str
    details: Any = None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class ExecutionAccepted(msgspec.Struct):
    execution_id: str


class EventList(msgspec.Struct):
    items: list[HistoryEntry]


class Health(msgspec.Struct):
    status: str
    checks: dict[str, str] = {}


_TYPES: list[Any] = [
    *PAYLOAD_TYPES,
    TaskInput, TaskPatch, Task, TaskPage, ExecutionPage, EventList, ExecutionAccepted,
    Execution, CancelRequest, RunInput, RerunInput,
    PreviewRequest, PreviewResponse, Stats, DevicePage, GroupPage, GroupInput, GroupPatch,
    DeviceGroup, ErrorBody, Health, Principal, StoredFile, DeadLetterPage, RejectedMessagePage,
    DeadLetter, *TRUST_TYPES,
]  # fmt: skip

_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_GROUP_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_GROUP_ID},
}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An optional query parameter; an empty one (`?limit=`) counts as left out."""
    return {"name": name, "in": "query", "allowEmptyValue": True, "schema": schema}


_PAGE = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
    _query("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}),
]
_FILTERS = [
    _query("status", {"type": "string", "enum": list(STATUSES)}),
    _query("task_type", {"type": "string", "enum": list(TASK_TYPES)}),
    _query("q", {"type": "string"}),
    _query("group_id", {"type": "integer", "minimum": 1}),
]
_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "description": "A retried request with the same key gets the first answer again",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
}
_DEAD_LETTER_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
}
_DEAD_LETTER_FILTERS = [
    _query("open", {"type": "string", "enum": ["true", "false"]}),
    _query("consumer", {"type": "string"}),
]
_FILE_NAME = {"name": "name", "in": "query", "schema": {"type": "string"}}
_BINARY = {"type": "string", "format": "binary"}
_FILE = {
    "application/octet-stream": {"schema": _BINARY},
    # The first part is the file, whatever its name.
    "multipart/form-data": {
        "schema": {"type": "object", "minProperties": 1, "additionalProperties": _BINARY}
    },
}

_RUN_FILTERS = [
    _query("task_id", {"type": "string", "format": "uuid"}),
    _query("status", {"type": "string", "enum": list(RUN_STATUSES)}),
    _query("device_id", {"type": "string", "maxLength": 128}),
    _query("trigger", {"type": "string", "enum": list(TRIGGERS)}),
]
_RUN_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}

# (method, path, summary, request body type or content map, success status, response type,
#  parameters, open)
_ROUTES: list[tuple[str, str, str, Any, int, Any, list[dict[str, Any]], bool]] = [
    ("post", "/api/schedule/tasks", "Create a task", TaskInput, 201, Task, [_KEY], False),
    ("get", "/api/schedule/tasks", "List tasks", None, 200, TaskPage, _FILTERS + _PAGE, False),
    ("get", "/api/schedule/tasks/{id}", "Get a task", None, 200, Task, [_ID], False),
    ("put", "/api/schedule/tasks/{id}", "Update a task", TaskPatch, 200, Task, [_ID, _KEY],
     False),
    ("delete", "/api/schedule/tasks/{id}", "Delete a task", None, 204, None, [_ID, _KEY],
     False),
    ("post", "/api/schedule/tasks/{id}/pause", "Pause a task", None, 200, Task, [_ID, _KEY],
     False),
    ("post", "/api/schedule/tasks/{id}/resume", "Resume a task", None, 200, Task,
     [_ID, _KEY], False),
    ("post", "/api/schedule/tasks/{id}/execute", "Run a task now", None, 202, ExecutionAccepted,
     [_ID, _KEY], False),
    ("get", "/api/schedule/tasks/{id}/executions", "A task's executions, newest first", None, 200,
     ExecutionPage, [_ID, *_PAGE], False),
    ("get", "/api/schedule/tasks/{id}/events", "A task's whole history", None, 200, EventList,
     [_ID], False),
    ("get", "/api/executions", "Runs across tasks, newest first (those the caller may see)",
     None, 200, ExecutionPage, _RUN_FILTERS + _PAGE, False),
    ("get", "/api/executions/{id}", "Get a run", None, 200, Execution, [_RUN_ID], False),
    ("post", "/api/executions/{id}/cancel", "Cancel a run", CancelRequest, 202, Execution,
     [_RUN_ID], False),
    ("post", "/api/executions", "Run now on devices, with no task (an ad-hoc run)", RunInput,
     202, ExecutionAccepted, [_KEY], False),
    ("post", "/api/executions/{id}/rerun", "Run an earlier run again on some of its devices",
     RerunInput, 202, ExecutionAccepted, [_RUN_ID, _KEY], False),
    ("post", "/api/schedule/preview", "Preview fire times", PreviewRequest, 200, PreviewResponse,
     [], False),
    ("get", "/api/me", "The token's user and role", None, 200, Principal, [], False),
    ("get", "/api/schedule/stats", "Task and execution counts", None, 200, Stats, [], False),
    ("get", "/api/devices", "The device registry", None, 200, DevicePage, [], False),
    ("get", "/api/groups", "Device groups", None, 200, GroupPage, [], False),
    ("post", "/api/groups", "Create a device group", GroupInput, 201, DeviceGroup, [_KEY],
     False),
    ("put", "/api/groups/{id}", "Update a device group", GroupPatch, 200, DeviceGroup,
     [_GROUP_ID, _KEY], False),
    ("delete", "/api/groups/{id}", "Delete a device group (409 with the task_ids using it "
     "unless force=true)", None, 204, None,
     [_GROUP_ID, _KEY, _query("force", {"type": "string", "enum": ["true", "false"]})], False),
    ("post", "/api/files", "Store a file: the raw body, or a form's first part", _FILE, 201,
     StoredFile, [_FILE_NAME], False),
    ("get", "/api/files/{id}", "A stored file's name, size and SHA-256", None, 200, StoredFile,
     [_RUN_ID], False),
    ("get", "/api/admin/dead-letters", "Events a consumer set aside (admin)", None, 200,
     DeadLetterPage, _DEAD_LETTER_FILTERS + _PAGE, False),
    ("post", "/api/admin/dead-letters/{id}/retry", "Ask its consumer to try it again (admin)",
     None, 202, DeadLetter, [_DEAD_LETTER_ID], False),
    ("get", "/api/admin/rejected-messages", "Device messages refused at the boundary (admin)",
     None, 200, RejectedMessagePage, [_query("device_id", {"type": "string"}), *_PAGE], False),
    *TRUST_ROUTES,
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
    "503": "The database is unreachable, or a stored change is not in the read tables yet; retry",
}
# Answers beside the success and _ERRORS: (method, path) -> status -> (description, type).
_MORE: dict[tuple[str, str], dict[str, tuple[str, Any]]] = {
    ("get", "/readyz"): {"503": ("Not ready: the checks say what is unreachable", Health)},
}


def openapi_document() -> dict[str, Any]:
    (refs, components) = msgspec.json.schema_components(
        _TYPES, ref_template="#/components/schemas/{name}"
    )
    schema_of = dict(zip(_TYPES, refs, strict=True))
    describe_task_payloads(components, schema_of)
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
        for code, (text, shape) in _MORE.get((method, path), {}).items():
            schema = {"schema": schema_of[shape]}
            responses[code] = {"description": text, "content": {"application/json": schema}}
        operation: dict[str, Any] = {
            "summary": summary,
            "parameters": parameters,
            "responses": responses,
        }
        if body is not None:
            content = (
                body
                if isinstance(body, dict)
                else {"application/json": {"schema": schema_of[body]}}
            )
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
