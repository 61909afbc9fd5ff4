"""The API serves the web console: GET / and the files under /web/, without a token."""

from __future__ import annotations

from tests.stack import Stack


async def test_the_console_is_served_at_the_root_and_its_modules_under_web(
    shared_stack: Stack,
) -> None:
    session, base = shared_stack.session, shared_stack.base_url

    async with session.get(f"{base}/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        assert '<script type="module" src="/web/js/main.js">' in await response.text()
        assert response.headers["Cache-Control"] == "no-cache"

    # Browsers run a module served as either JavaScript type (which one depends on the system).
    javascript = {"text/javascript", "application/javascript"}
    for path, content_types in [
        ("/web/js/main.js", javascript),
        ("/web/js/views/tasks.js", javascript),
        ("/web/app.css", {"text/css"}),
    ]:
        async with session.get(base + path) as response:
            assert response.status == 200, path
            assert response.content_type in content_types, path
            assert response.headers["Cache-Control"] == "no-cache"


async def test_nothing_outside_web_is_served(shared_stack: Stack) -> None:
    session, base = shared_stack.session, shared_stack.base_url
    for path in ("/web/../pyproject.toml", "/web/%2e%2e/pyproject.toml", "/web/nothing.js"):
        async with session.get(base + path) as response:
            assert response.status in (403, 404), path
