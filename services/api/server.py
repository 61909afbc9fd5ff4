"""Serving the API: aiohttp's own error answers in the contract's shape, over HTTP or HTTPS."""

from __future__ import annotations

import ssl
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong

from services.api.headers import SECURITY_HEADERS
from services.api.responses import error_response
from services.infra.settings import Settings

log = structlog.get_logger("deployx.api")

# aiohttp's defaults, set here so that the error messages state them truly.
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 8190
MAX_HEADERS = 128
LIMITS = {"max_line_size": MAX_LINE_BYTES, "max_field_size": MAX_FIELD_BYTES}


class _JsonErrorsHandler(web.RequestHandler):
    """A connection's request handler whose own error answers are JSON.

    aiohttp answers a request it cannot parse (a header over 8 KB, a broken request line)
    itself, in text/plain, before any middleware or signal runs, and offers no hook for it
    (aio-libs/aiohttp#3287). handle_error is the one method it calls to build those answers
    (and the 500 of an exception past every middleware), so this overrides just that.
    """

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 or request.writer.output_size > 0:
            # aiohttp's own: logs the traceback, and raises when an answer has begun already.
            super().handle_error(request, status, exc, message)
            response = error_response(status, "internal_error", "an unexpected error occurred")
        else:
            field, reason = _unreadable(exc, message)
            log.warning("request_unreadable", status=status, field=field, reason=reason)
            details = {"field": field, "reason": reason}
            response = error_response(status, "malformed_request", f"{field}: {reason}", details)
        response.headers.update(SECURITY_HEADERS)
        response.force_close()
        return response


def _unreadable(exc: BaseException | None, message: str | None) -> tuple[str, str]:
    """The part of an HTTP request that could not be read, and why, in a line."""
    text = message or (str(exc) if exc is not None else "")
    if isinstance(exc, LineTooLong):
        return "headers", f"the request line and each header may be at most {MAX_LINE_BYTES} bytes"
    if "too many headers" in text.lower():
        return "headers", f"at most {MAX_HEADERS} headers are read"
    first = text.strip().splitlines()[0] if text.strip() else "it could not be parsed"
    return "request", f"is not valid HTTP/1.1: {first[:200]}"


class _Server(web.Server):
    """The protocol factory of the listening socket: makes _JsonErrorsHandler connections."""

    def __call__(self) -> web.RequestHandler:
        return _JsonErrorsHandler(self, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """An AppRunner (the app's whole lifecycle) whose connections answer errors in JSON."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(app, **(LIMITS | {"max_headers": MAX_HEADERS} | kwargs))

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The app's Server, as aiohttp built it, with only its connection factory changed.
        server.__class__ = _Server
        return server


def api_url(settings: Settings) -> str:
    """Where the API and console answer, as a browser would be pointed at it."""
    scheme = "https" if settings.tls_cert else "http"
    return f"{scheme}://{settings.host}:{settings.port}/"


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context when a certificate and key are configured, else None."""
    if settings.tls_cert is None and settings.tls_key is None:
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise ValueError("TLS needs both a certificate and its key (--tls-cert and --tls-key)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


async def start_api(app: web.Application, settings: Settings, **runner: Any) -> ApiRunner:
    """Serves app on settings.host and .port (HTTPS when TLS is configured) until cleanup()."""
    context = tls_context(settings)
    api = ApiRunner(app, **runner)
    await api.setup()
    try:
        site = web.TCPSite(api, settings.host, settings.port, ssl_context=context)
        await site.start()
    except BaseException:
        await api.cleanup()
        raise
    return api
