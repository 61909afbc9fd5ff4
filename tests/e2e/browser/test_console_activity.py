"""The dashboard's Live activity (issue 14, point 1) at desktop and phone size: the latest runs
are there on load, a task's run and an ad-hoc run each under its own name, and a run started
while the page is open joins them live, linked to its run page."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.browser.conftest import TASKS, Console, create_task, new_context, tag
from tests.e2e.browser.layout import DESKTOP, PHONE, overflowing
from tests.e2e.processes import wait_until


async def adhoc_run(console: Console, name: str) -> str:
    status, started = await console.api.post(
        "/api/executions",
        {
            "name": name,
            "task_type": "command",
            "task_payload": {"command_payload": {"command": "echo activity"}},
            "device_ids": ["local-2"],
        },
    )
    assert status == 202, started
    return str(started["execution_id"])


async def finished(console: Console, *run_ids: str) -> None:
    async def done() -> bool:
        for run_id in run_ids:
            status, run = await console.api.get(f"/api/executions/{run_id}")
            if status != 200 or run["status"] == "running":
                return False
        return True

    await wait_until(done, 30, "the runs to finish", [])


async def expect_run(page: Page, run_id: str, name: str, status: str) -> None:
    item = page.locator(f'.activity-item[data-execution="{run_id}"]')
    await expect(item.locator(".badge")).to_have_text(status)
    link = item.get_by_role("link")
    await expect(link).to_have_text(name)
    await expect(link).to_have_attribute("href", f"#/executions/{run_id}")


@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_live_activity_lists_the_latest_runs_on_load_and_ad_hoc_runs_live(
    browser: Browser, console: Console, size: str
) -> None:
    # Runs made before the page opens: a task's run, and an ad-hoc run (no task).
    task = await create_task(
        console.api,
        name=f"Nightly check {tag()}",
        device_ids=["local-1"],
        task_payload={"command_payload": {"command": "exit 4"}},
    )
    status, started = await console.api.post(f"{TASKS}/{task['id']}/execute")
    assert status == 202, started
    task_run = started["execution_id"]
    earlier_name = f"Hotfix {tag()}"
    earlier_run = await adhoc_run(console, earlier_name)
    await finished(console, task_run, earlier_run)

    phone = size == "phone"
    context = await new_context(
        browser, console.token, viewport=PHONE if phone else DESKTOP, is_mobile=phone
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{console.base_url}/#/dashboard")
    card = page.locator("section.activity")
    await expect_run(page, task_run, task["name"], "failed")
    await expect_run(page, earlier_run, earlier_name, "success")
    await expect(card).not_to_contain_text("since this page opened")

    # An ad-hoc run started now joins the list live, under its own name.
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    live_name = f"Restart cache {tag()}"
    live_run = await adhoc_run(console, live_name)
    await expect_run(page, live_run, live_name, "success")
    await expect(card).not_to_contain_text("a deleted task")
    if phone:
        assert await overflowing(page) == []
    await card.get_by_role("link", name=live_name).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(live_name)
    await context.close()
    assert errors == [], errors
