"""Every answer carries the console's security headers: a strict content policy, no MIME
sniffing, no framing, no referrer."""

from __future__ import annotations

import pytest

from tests.stack import Stack

EXPECTED = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
PATHS = {
    "the console": ("GET", "/", 200),
    "its stylesheet": ("GET", "/web/app.css", 200),
    "its main module": ("GET", "/web/js/main.js", 200),
    "a console file that is not there": ("GET", "/web/nothing.js", 404),
    "an API route": ("GET", "/api/me", 200),
    "an API error": ("POST", "/api/schedule/tasks", 403),
    "no token": ("GET", "/api/devices", 401),
    "no such route": ("GET", "/nowhere", 404),
    "a probe": ("GET", "/healthz", 200),
    "the metrics": ("GET", "/metrics", 200),
}


@pytest.mark.parametrize(("method", "path", "status"), PATHS.values(), ids=PATHS.keys())
async def test_every_answer_carries_the_security_headers(
    shared_stack: Stack, method: str, path: str, status: int
) -> None:
    token = (await shared_stack.client("viewer-headers", "viewer")).token
    auth = {} if path == "/api/devices" else {"Authorization": f"Bearer {token}"}
    async with shared_stack.session.request(
        method, shared_stack.base_url + path, headers=auth
    ) as response:
        assert response.status == status, await response.text()
        sent = {name: response.headers.get(name) for name in EXPECTED}

    assert sent == EXPECTED


async def test_a_304_of_the_console_carries_them_too(shared_stack: Stack) -> None:
    url = shared_stack.base_url + "/web/app.css"
    async with shared_stack.session.get(url) as first:
        etag = first.headers["ETag"]
    async with shared_stack.session.get(url, headers={"If-None-Match": etag}) as again:
        assert again.status == 304
        assert {name: again.headers.get(name) for name in EXPECTED} == EXPECTED
