"""The console's task kinds: a dashboard panel for each kind the API offers, and a script task
uploaded, scheduled through the modal, run on a device and shown with its output."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.e2e.browser.conftest import TASKS, Console, tag

SCRIPT = b"""#!/bin/sh
printf '%s from %s:' "$GREETING" "$DEPLOYX_DEVICE_ID"
printf ' [%s]' "$@"
echo
"""


async def test_the_dashboard_has_a_panel_for_every_kind_the_api_offers(
    page: Page, console: Console
) -> None:
    _, document = await console.api.get("/api/openapi.json")
    kinds = document["components"]["schemas"]["TaskInput"]["properties"]["task_type"]["enum"]
    panels = page.locator("[data-panel]")
    await expect(panels).to_have_count(len(kinds))
    shown = await panels.evaluate_all("(panels) => panels.map((panel) => panel.dataset.panel)")
    assert sorted(shown) == sorted(kinds)


async def test_a_script_scheduled_in_the_modal_runs_with_its_arguments_and_environment(
    page: Page, console: Console
) -> None:
    name = f"Inventory {tag()}"
    panel = page.locator("[data-panel=script]")
    await panel.get_by_label("Script", exact=True).set_input_files(
        {"name": "inventory.sh", "mimeType": "text/x-sh", "buffer": SCRIPT}
    )
    await panel.get_by_label("Arguments").fill("--host\nweb 1")
    await page.get_by_role("checkbox", name="local-1").check()

    # An environment line that is no NAME=value is refused beside the field, before any upload.
    environment = panel.get_by_label("Environment")
    await environment.fill("GREETING hello")
    await panel.get_by_role("button", name="Schedule").click()
    await expect(panel.locator(".field-error", has_text="Write NAME=value")).to_be_visible()
    await expect(environment).to_have_attribute("aria-invalid", "true")
    await expect(panel.locator("progress")).to_be_hidden()
    await environment.fill("GREETING=hello there")

    await panel.get_by_role("button", name="Schedule").click()
    modal = page.get_by_role("dialog", name="Schedule a script task")
    await expect(modal).to_be_visible()
    await expect(modal.locator(".stored-file")).to_contain_text("inventory.sh")
    await expect(modal.get_by_label("Arguments")).to_have_value("--host\nweb 1")
    await expect(modal.get_by_label("Environment")).to_have_value("GREETING=hello there")
    await modal.get_by_label("Task name").fill(name)
    await modal.get_by_label("Daily").check()
    await modal.get_by_role("button", name="Schedule task").click()

    await expect(page).to_have_url(re.compile(r"#/tasks$"))
    card = page.locator("article.task-card", has_text=name)
    await expect(card.locator(".type")).to_have_text("Script")
    _, found = await console.api.get(f"{TASKS}?q={name.replace(' ', '+')}")
    [task] = found["items"]
    assert task["task_type"] == "script"
    payload = task["task_payload"]["script_payload"]
    assert (payload["args"], payload["env"]) == (["--host", "web 1"], {"GREETING": "hello there"})

    await card.get_by_role("link", name=name).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(name)
    await expect(page.get_by_text("--host web 1")).to_be_visible()
    await page.get_by_role("button", name=f"Execute {name}").click()
    result = page.locator('li.run .device-result[data-device="local-1"]').first
    await expect(result.locator("pre.stdout")).to_have_text(
        "hello there from local-1: [--host] [web 1]"
    )
    await expect(result.locator(".exit-code")).to_have_text("exit code 0")
    await expect(page.locator("li.run").first).to_have_attribute("data-status", "success")
