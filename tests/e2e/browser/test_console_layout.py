"""Every screen of the console at a phone's size (390x844) and a laptop's: nothing wider than its
box on the phone, and axe-core finds no serious or critical accessibility violation, in light
and in dark. An error after a click on a phone is where the user is looking."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.browser.conftest import (
    TASKS,
    Console,
    create_task,
    new_context,
    snap,
    tag,
)
from tests.e2e.browser.layout import DESKTOP, PHONE, check_screen, in_view
from tests.e2e.browser.test_console import new_token
from tests.e2e.processes import wait_until
from tests.e2e.webhook_receiver import running_receiver

Screen = tuple[str, Callable[[Page], Awaitable[None]]]
TOP_BAR_MAX_PX = 96  # two rows of 44 px
# docs/screenshots/<name>.png of the phone's screens (with DEPLOYX_SCREENSHOTS=1); the dashboard
# and executions ones are taken by test_console.py and test_console_runs.py.
PHONE_SHOTS = {
    "task detail": "task-detail-phone",
    "task modal": "schedule-modal-phone",
    "run view": "run-view-phone",
    "devices and groups": "devices-phone",
    "audit": "audit-phone",
}


async def seeded(console: Console, receiver_url: str) -> dict[str, str]:
    """What the screens show: a task with a finished run, a group and a webhook."""
    word = tag()
    task = await create_task(
        console.api,
        name=f"Nightly package refresh for the web frontends {word}",
        description="Refreshes the package lists, then reports the disk use of /var.",
        recurrence_type="weekly",
        recurrence_config={"time": "02:30", "days": [1, 4], "timezone": "Europe/Berlin"},
        delivery={"waves": [1, "50%"], "max_errors": 1},
        task_payload={
            "command_payload": {
                "command": "echo refreshed-$(hostname)-" + "x" * 120 + "; echo done >&2"
            }
        },
    )
    failing = await create_task(
        console.api,
        name=f"Rotate the logs {word}",
        task_payload={"command_payload": {"command": "echo 'no space left' >&2; exit 3"}},
    )
    runs = []
    for each in (task, failing):  # a run that succeeds and one that fails: both kinds of badge
        status, started = await console.api.post(f"{TASKS}/{each['id']}/execute")
        assert status == 202, started
        runs.append(started["execution_id"])

    async def finished() -> bool:
        for run_id in runs:
            _, run = await console.api.get(f"/api/executions/{run_id}")
            if run["status"] == "running":
                return False
        return True

    await wait_until(finished, 30, "the seeded runs to finish", [console.process])
    status, group = await console.api.post(
        "/api/groups", {"name": f"frontends-{word}", "device_ids": ["local-1", "local-2"]}
    )
    assert status == 201, group
    status, hook = await console.api.post(
        "/api/webhooks",
        {
            "url": receiver_url,
            "event_types": ["ExecutionCompleted", "TaskCreated"],
            "secret": "a secret of the receiver",
        },
    )
    assert status == 201, hook
    status, _ = await console.api.post(f"/api/webhooks/{hook['id']}/test")
    assert status == 202
    return {
        "task": task["id"],
        "name": task["name"],
        "run": runs[0],
        "group": group["name"],
        "hook": receiver_url,
    }


def screens(base: str, seed: dict[str, str], *, phone: bool) -> list[Screen]:
    """Each screen: how to open it and what says it has loaded; on a phone, the first screen
    shows what the page is for."""

    async def dashboard(page: Page) -> None:
        await page.goto(f"{base}/#/dashboard")
        await expect(page.get_by_role("checkbox", name="local-1")).to_be_visible()
        # The top bar: one row on a laptop; on a phone two short rows (brand and session; the
        # nav and the zone), not three.
        bar = await page.locator("#topbar").bounding_box()
        assert bar is not None and bar["height"] <= (TOP_BAR_MAX_PX if phone else 60), bar

    async def zone_dialog(page: Page) -> None:
        await page.locator("#zone-setting").click()
        await expect(page.get_by_role("dialog").get_by_label("Search zones")).to_be_visible()

    async def tasks(page: Page) -> None:
        await page.goto(f"{base}/#/tasks")
        card = page.locator("article.task-card").first
        await expect(card).to_be_visible()
        if phone:  # the list first; the statistics fold away above it
            assert await in_view(card), "the first task is below the first screen"
            await snap(page, "tasks-phone")
            await page.get_by_text("Statistics and charts").click()
        await expect(page.locator(".chart-figure").first).to_be_visible()

    async def task_detail(page: Page) -> None:
        await page.goto(f"{base}/#/tasks/{seed['task']}?run={seed['run']}")
        await expect(page.locator(".device-result pre").first).to_be_visible()
        await expect(page.locator(".history tbody tr").first).to_be_visible()

    async def task_modal(page: Page) -> None:
        await page.get_by_role("button", name=f"Edit {seed['name']}").click()
        await expect(page.get_by_role("dialog")).to_be_visible()
        await expect(page.locator(".preview-list li").first).to_be_visible()

    async def delete_dialog(page: Page) -> None:
        await page.keyboard.press("Escape")
        await page.get_by_role("button", name=f"Delete {seed['name']}").click()
        await expect(page.get_by_role("dialog", name="Delete this task?")).to_be_visible()

    async def run_view(page: Page) -> None:
        await page.goto(f"{base}/#/executions/{seed['run']}")
        await expect(page.locator(".device-result pre").first).to_be_visible()

    async def executions(page: Page) -> None:
        await page.goto(f"{base}/#/executions")
        await expect(page.locator("tr.run-row").first).to_be_visible()

    async def devices(page: Page) -> None:
        await page.goto(f"{base}/#/devices")
        await expect(page.locator('tr[data-device="local-1"] .state')).to_have_text("online")
        await expect(page.locator("article.group-card", has_text=seed["group"])).to_be_visible()
        # Each cell says which column it is (a phone stacks the rows and shows these names).
        cells = page.locator('tr[data-device="local-1"] td')
        await expect(cells.first).to_have_attribute("data-label", "State")
        if phone:
            before = "(cell) => getComputedStyle(cell, '::before').content"
            label = await cells.first.evaluate(before)
            assert "State" in label, label

    async def group_dialog(page: Page) -> None:
        card = page.locator("article.group-card", has_text=seed["group"])
        await card.get_by_role("button", name=f"Edit group {seed['group']}").click()
        await expect(page.get_by_role("dialog").get_by_label("Group name")).to_be_visible()

    async def webhooks(page: Page) -> None:
        await page.goto(f"{base}/#/webhooks")
        card = page.locator(".webhook-card", has_text=seed["hook"])
        await card.get_by_role("button", name="Deliveries").click()
        await expect(card.locator(".deliveries tbody tr").first).to_be_visible()

    async def webhook_dialog(page: Page) -> None:
        await page.get_by_role("button", name="New webhook").click()
        await expect(page.get_by_role("dialog").get_by_label("URL")).to_be_visible()

    async def audit(page: Page) -> None:
        await page.goto(f"{base}/#/audit")
        await expect(page.locator(".audit-table tbody tr").first).to_be_visible()
        if phone:  # the nav strip shows where the user is
            assert await in_view(page.locator(".nav a[aria-current=page]")), "Audit is off-screen"

    return [
        ("dashboard", dashboard),
        ("zone dialog", zone_dialog),
        ("tasks", tasks),
        ("task detail", task_detail),
        ("task modal", task_modal),
        ("delete dialog", delete_dialog),
        ("run view", run_view),
        ("executions", executions),
        ("devices and groups", devices),
        ("group dialog", group_dialog),
        ("webhooks", webhooks),
        ("webhook dialog", webhook_dialog),
        ("audit", audit),
    ]


@pytest.mark.parametrize("size", ["phone", "desktop"])
async def test_every_screen_fits_and_passes_axe_in_light_and_dark(
    browser: Browser, console: Console, size: str
) -> None:
    phone = size == "phone"
    viewport = PHONE if phone else DESKTOP
    failures: list[str] = []

    # Sign-in, before any token.
    context = await new_context(browser, None, viewport=viewport, is_mobile=phone)
    page = await context.new_page()
    await page.goto(console.base_url + "/")
    await expect(page.get_by_label("API token")).to_be_focused()
    failures += await check_screen(page, "sign-in", phone=phone)
    await page.get_by_label("API token").fill("dx_not-a-real-token")
    await page.keyboard.press("Enter")
    await expect(page.locator(".field-error")).to_be_visible()
    failures += await check_screen(page, "sign-in refused", phone=phone)
    await context.close()

    async with running_receiver() as receiver:
        seed = await seeded(console, receiver.url(f"layout-{tag()}"))
        context = await new_context(browser, console.token, viewport=viewport, is_mobile=phone)
        page = await context.new_page()
        for name, open_screen in screens(console.base_url, seed, phone=phone):
            await open_screen(page)
            failures += await check_screen(page, name, phone=phone)
            if phone and name in PHONE_SHOTS:
                await snap(page, PHONE_SHOTS[name])
        await context.close()

    # A viewer: the notice that Execute and Schedule are off, and a page for admins only.
    viewer = await new_token(console, f"vic-{tag()}", "viewer")
    context = await new_context(browser, viewer, viewport=viewport, is_mobile=phone)
    page = await context.new_page()
    await page.goto(f"{console.base_url}/#/dashboard")
    await expect(page.get_by_text("The viewer role may only read")).to_be_visible()
    failures += await check_screen(page, "viewer's dashboard", phone=phone)
    await page.goto(f"{console.base_url}/#/audit")
    await expect(page.get_by_role("alert")).to_contain_text("for admins only")
    failures += await check_screen(page, "viewer's audit", phone=phone)
    await context.close()
    assert failures == [], "\n".join(failures)


async def test_on_a_phone_an_execute_error_is_in_view_after_the_click(
    browser: Browser, console: Console
) -> None:
    context = await new_context(browser, console.token, viewport=PHONE, is_mobile=True)
    page = await context.new_page()
    await page.goto(f"{console.base_url}/#/dashboard")
    # The software panel: the second, well below the targets on a phone.
    panel = page.locator("[data-panel=software_deployment]")
    await panel.get_by_label("Package", exact=True).fill("nginx")
    execute = panel.get_by_role("button", name="Execute")
    await execute.scroll_into_view_if_needed()

    # No target chosen: the reason is where the user pressed Execute.
    await execute.click()
    error = page.get_by_role("alert").filter(has_text="Choose at least one device or group")
    await expect(error.first).to_be_visible()
    shown = [await in_view(item) for item in await error.all() if await item.is_visible()]
    assert any(shown), "the error after Execute is outside the screen"
    await snap(page, "dashboard-error-phone")

    # The API's refusal (a 422 on a field of the panel) is in view as well.
    await page.get_by_role("checkbox", name="local-1").check()
    await panel.get_by_label("Package", exact=True).fill("not a package!")
    await execute.scroll_into_view_if_needed()
    await execute.click()
    field_error = panel.locator(".field-error:visible").first
    await expect(field_error).to_be_visible()
    assert await in_view(field_error), "the API's error after Execute is outside the screen"
    failures = await check_screen(page, "dashboard with errors", phone=True)
    assert failures == [], "\n".join(failures)
    await context.close()
