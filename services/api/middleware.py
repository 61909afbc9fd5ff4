"""Middlewares: one summary log line and metrics per request, errors in one shape, bearer auth."""

from __future__ import annotations

import re
import time
import uuid

import asyncpg
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import Counter, Histogram

from services.api.keys import BEARER, PRINCIPAL, TOKENS
from services.api.responses import ApiError, error_response
from services.domain.errors import Conflict, DomainError, NotFound, TooLarge, ValidationFailed
from services.engine.read_your_writes import ProjectionLagging
from services.infra.db import UNAVAILABLE, describe

log = structlog.get_logger("deployx.api")

REQUESTS = Counter("deployx_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "deployx_http_request_duration_seconds", "HTTP request latency", ["method", "route"]
)

_REQUEST_ID = re.compile(r"[!-~]{1,128}")
_DOMAIN_STATUS: dict[type[DomainError], int] = {
    ValidationFailed: 422,
    Conflict: 409,
    NotFound: 404,
    TooLarge: 413,
}


@web.middleware
async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    given = request.headers.get("X-Request-Id", "")
    # The client's id goes into the log and every event's metadata: only a short printable one.
    request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    structlog.contextvars.bind_contextvars(request_id=request_id)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-Id"] = request_id
        return response
    finally:
        elapsed = time.perf_counter() - started
        route = request.match_info.route.resource
        route_name = route.canonical if route is not None else "unmatched"
        REQUESTS.labels(request.method, route_name, str(status)).inc()
        LATENCY.labels(request.method, route_name).observe(elapsed)
        log.info(
            "request",
            method=request.method,
            path=request.path,
            status=status,
            duration_ms=round(elapsed * 1000, 2),
            user=getattr(request.get(PRINCIPAL), "user", None),
        )
        structlog.contextvars.unbind_contextvars("request_id")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details)
    except DomainError as exc:
        status = next(s for cls, s in _DOMAIN_STATUS.items() if isinstance(exc, cls))
        return error_response(status, exc.code, exc.message, exc.details)
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, "body_too_large", exc.text or "the request body is too large")
    except web.RequestPayloadError as exc:  # e.g. a Content-Encoding that does not decode
        reason = str(exc).splitlines()[-1].strip()[:200]
        return error_response(400, "malformed_body", f"the request body cannot be read: {reason}")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        return error_response(exc.status, code, exc.text or exc.reason)
    except ProjectionLagging:
        return error_response(
            503,
            "read_model_lagging",
            "the change was stored, but the read tables did not show it in time; retry the GET",
        )
    except UNAVAILABLE as exc:
        log.warning("backend_unavailable", error=describe(exc))
        if isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
            message = "the database takes no writes (read-only: a failover?); retry shortly"
        else:
            message = "the database is unreachable; retry shortly"
        return error_response(503, "unavailable", message)
    except Exception:
        log.exception("unhandled_error")
        return error_response(500, "internal_error", "an unexpected error occurred")


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>")
    # Tokens are ASCII; other bytes arrive as surrogates, which could not even be hashed.
    principal = await request.app[TOKENS].principal(token) if token.isascii() else None
    if principal is None:
        raise ApiError(401, "unauthorized", "the token is not valid")
    request[PRINCIPAL], request[BEARER] = principal, token
    return await handler(request)
