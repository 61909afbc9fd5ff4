"""The web console in a real headless Chromium (Debian's), against a real `deployx up`.

One `deployx up --agents 2` (embedded PostgreSQL and NATS, every service, agents local-1 and
local-2) serves the whole browser suite; each test gets a fresh browser context, signed in as
the admin unless it tests sign-in itself. With DEPLOYX_SCREENSHOTS=1 the tests also save the
screenshots of docs/screenshots/.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.infra.embedded import free_port
from tests.e2e.processes import ServiceProcess, wait_until
from tests.stack import Client

CHROMIUM = Path(os.environ.get("DEPLOYX_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (scripts/test installs it)", allow_module_level=True)
pytest.importorskip("playwright", reason="playwright is in the project's test extra")

from playwright.async_api import (  # noqa: E402
    Browser,
    BrowserContext,
    Page,
    async_playwright,
    expect,
)

# No outside network here: without these, Chromium stalls on refused background connections.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEVICES = ["local-1", "local-2"]
BROWSER_ZONE = "Europe/Berlin"
SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
TASKS = "/api/schedule/tasks"
# Waits are on conditions, never sleeps; these are only how long a condition may take at worst,
# on a loaded 2-core machine (Playwright's default for expect() is 5 s).
TIMEOUT_MS = 20_000
expect.set_options(timeout=TIMEOUT_MS)


@dataclass
class Console:
    """The running system: its URL, admin token and data directory, and an API client."""

    base_url: str
    token: str
    data_dir: Path
    api: Client
    process: ServiceProcess


@pytest.fixture(scope="package")
async def console() -> AsyncIterator[Console]:
    """`deployx up` as a user runs it, ready once /readyz answers and both agents are online."""
    # Our own directory, world-traversable: under root the embedded PostgreSQL runs as another
    # user, which must reach its data directory inside.
    base = Path(tempfile.mkdtemp(prefix="deployx-console-"))
    os.chmod(base, 0o755)
    data_dir, logs = base / "data", base / "logs"
    os.mkdir(logs)
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("DEPLOYX_")}
    env["DEPLOYX_LOG_FORMAT"] = "json"
    up = ServiceProcess(
        "up",
        ["up", "--data-dir", str(data_dir), "--port", str(port), "--agents", str(len(DEVICES))],
        logs,
        env,
    ).start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                try:
                    async with session.get(f"{base_url}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(ready, 60, "deployx up to be ready", [up])
            token = (data_dir / "admin-token").read_text().strip()
            api = Client(session, base_url, token)

            async def agents_online() -> bool:
                status, devices = await api.get("/api/devices")
                online = {d["id"] for d in devices["items"] if d["online"]} if status == 200 else {}
                return set(DEVICES) <= set(online)

            await wait_until(agents_online, 60, "the local agents to be online", [up])
            yield Console(base_url, token, data_dir, api, up)
    finally:
        up.terminate(timeout=30)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


async def new_context(browser: Browser, token: str | None, **options: Any) -> BrowserContext:
    """A context in a fixed zone and locale (so times read the same everywhere); signed in when
    given a token, as the sign-in form would leave it."""
    context = await browser.new_context(
        viewport=options.pop("viewport", {"width": 1280, "height": 900}),
        timezone_id=BROWSER_ZONE,
        locale="en-GB",
        **options,
    )
    context.set_default_timeout(TIMEOUT_MS)
    if token is not None:
        await context.add_init_script(f"sessionStorage.setItem('deployx.token', '{token}')")
    return context


@pytest.fixture
async def page(browser: Browser, console: Console) -> AsyncIterator[Page]:
    """A signed-in admin's tab; fails the test if the page threw an uncaught error or the
    content policy refused anything."""
    context = await new_context(browser, console.token)
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on(
        "console",
        lambda message: errors.extend([message.text] if "Content Security" in message.text else []),
    )
    await tab.goto(console.base_url + "/")
    yield tab
    await context.close()
    assert errors == [], errors


async def snap(page: Page, name: str, *, full_page: bool = False) -> None:
    """docs/screenshots/<name>.png and <name>-dark.png, when DEPLOYX_SCREENSHOTS=1."""
    if os.environ.get("DEPLOYX_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.evaluate("document.querySelectorAll('.toast').forEach((toast) => toast.remove())")
    for scheme, suffix in (("light", ""), ("dark", "-dark")):
        await page.emulate_media(color_scheme="dark" if scheme == "dark" else "light")
        await page.screenshot(path=str(SCREENSHOTS / f"{name}{suffix}.png"), full_page=full_page)
    await page.emulate_media(color_scheme="light")


def tag() -> str:
    """A word no other test uses, to find this test's tasks by search."""
    return uuid.uuid4().hex[:8]


async def create_task(api: Client, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"task {tag()}",
        "task_type": "command",
        "recurrence_type": "daily",
        "recurrence_config": {"time": "03:00", "timezone": "UTC"},
        "device_ids": DEVICES,
        "task_payload": {"command_payload": {"command": "true"}},
    }
    body.update(fields)
    status, task = await api.post(TASKS, body)
    assert status == 201, task
    return dict(task)
