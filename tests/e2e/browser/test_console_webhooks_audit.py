"""The console's Webhooks page (create, test-send, deliveries, re-send) and Audit page (who did
what, when, to which task), against the `deployx up` of the browser suite, which runs the
webhooks sender; the receiver is a real HTTP server on 127.0.0.1 in this test."""

from __future__ import annotations

import re

from playwright.async_api import Browser, Page, expect

from tests.e2e.browser.conftest import TASKS, Console, create_task, new_context, snap, tag
from tests.e2e.browser.test_console import new_token
from tests.e2e.processes import wait_until
from tests.e2e.webhook_receiver import running_receiver


async def test_an_admin_creates_a_webhook_tests_it_and_sends_a_delivery_again(
    page: Page, console: Console
) -> None:
    async with running_receiver() as receiver:
        await page.goto(console.base_url + "/#/webhooks")
        await page.get_by_role("button", name="New webhook").click()
        dialog = page.get_by_role("dialog")
        path = f"hook-{tag()}"
        await dialog.get_by_label("URL").fill(receiver.url(path))
        await dialog.get_by_label("Secret").fill("too short")
        await dialog.get_by_label("TaskCreated").check()
        await dialog.get_by_role("button", name="Create webhook").click()
        await expect(dialog.locator(".field-error:visible")).to_contain_text("16")
        await expect(dialog.get_by_label("Secret")).to_have_attribute("aria-invalid", "true")
        await dialog.get_by_label("Secret").fill("a secret of the receiver")
        await dialog.get_by_role("button", name="Create webhook").click()
        await expect(dialog).to_be_hidden()

        card = page.locator(".webhook-card", has_text=receiver.url(path))
        await expect(card.locator(".chip")).to_have_text(["TaskCreated"])
        await card.get_by_role("button", name=re.compile("^Send test")).click()
        test_row = card.locator("tr", has_text="WebhookTest")
        await expect(test_row.locator(".badge")).to_have_text("delivered")
        await expect(test_row.locator(".attempts li")).to_contain_text("HTTP 200")
        assert [r.headers["X-DeployX-Event"] for r in receiver.at(path)] == ["WebhookTest"]

        task = await create_task(console.api)
        created = card.locator("tr", has_text="TaskCreated")
        await expect(created.locator(".badge")).to_have_text("delivered")
        await expect(created.get_by_role("link")).to_have_attribute("href", f"#/tasks/{task['id']}")
        await snap(page, "webhooks")
        await created.get_by_role("button", name=re.compile("^Re-send")).click()

        async def twice() -> bool:
            sent = [r for r in receiver.at(path) if r.headers["X-DeployX-Event"] == "TaskCreated"]
            return len(sent) == 2 and sent[0].delivery == sent[1].delivery

        await wait_until(twice, 20, "the re-sent delivery", [console.process])
        await expect(created.locator(".attempts li")).to_have_count(2)

        await card.get_by_role("button", name=re.compile("^Delete")).click()
        await page.get_by_role("dialog").get_by_role("button", name="Delete webhook").click()
        await expect(card).to_be_hidden()


async def test_the_audit_page_shows_who_did_what_to_which_task_and_filters(
    page: Page, console: Console
) -> None:
    task = await create_task(console.api)
    assert (await console.api.post(f"{TASKS}/{task['id']}/pause"))[0] == 200
    await page.goto(console.base_url + "/#/audit")
    await expect(page.get_by_role("link", name="Audit")).to_have_attribute("aria-current", "page")
    await page.get_by_label("Task").fill(task["id"])
    await page.get_by_label("Task").press("Enter")
    rows = page.locator(".audit-table tbody tr")
    await expect(rows.locator("th")).to_have_text(["TaskPaused", "TaskCreated"])
    await expect(rows.first.locator("td").nth(1)).to_have_text("admin")
    await expect(page).to_have_url(re.compile(f"task_id={task['id']}"))
    await snap(page, "audit")

    await page.get_by_label("Event").select_option("TaskCreated")
    await expect(rows.locator("th")).to_have_text(["TaskCreated"])
    await rows.first.get_by_role("link", name=task["id"]).click()
    await expect(page).to_have_url(re.compile(f"#/tasks/{task['id']}$"))
    await expect(page.get_by_role("heading", name=task["name"])).to_be_visible()


async def test_a_viewer_sees_neither_page(browser: Browser, console: Console) -> None:
    context = await new_context(browser, await new_token(console, f"v-{tag()}", "viewer"))
    page = await context.new_page()
    await page.goto(console.base_url + "/#/audit")
    await expect(page.get_by_role("alert")).to_contain_text("for admins only")
    await expect(page.get_by_role("link", name="Webhooks")).to_be_hidden()
    await expect(page.get_by_role("link", name="Audit")).to_be_hidden()
    await page.goto(console.base_url + "/#/webhooks")
    await expect(page.get_by_role("alert")).to_contain_text("Webhooks are for admins only")
    await context.close()
