"""What the console says, at desktop and phone size: field errors in words (issue 14 point 3),
times that name their zone (point 2), and history that shows what changed (point 7)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Locator, Page, expect

from tests.e2e.browser.conftest import Console, new_context

SIZES: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True},
}


@pytest.fixture(params=list(SIZES))
async def sized(
    request: pytest.FixtureRequest, browser: Browser, console: Console
) -> AsyncIterator[Page]:
    """A signed-in admin's tab at desktop or phone size; fails on an uncaught page error."""
    context = await new_context(browser, console.token, **SIZES[request.param])
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    await tab.goto(console.base_url + "/")
    yield tab
    await context.close()
    assert errors == [], errors


async def assert_fits(page: Page, element: Locator) -> None:
    """`element` is on screen after the action, and neither it nor the page is wider than the
    window."""
    await expect(element).to_be_in_viewport()
    box = await element.bounding_box()
    width = await page.evaluate("window.innerWidth")
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page is {overflow}px wider than the window"


# --- point 3: field errors in words -------------------------------------------------------------


async def test_a_file_mode_is_checked_before_the_upload(sized: Page, console: Console) -> None:
    uploads: list[str] = []
    sized.on(
        "request",
        lambda request: uploads.extend(
            [request.url] if request.method == "POST" and "/api/files" in request.url else []
        ),
    )
    panel = sized.locator("[data-panel=file_deployment]")
    await panel.get_by_label("File", exact=True).set_input_files(
        {"name": "app.conf", "mimeType": "text/plain", "buffer": b"x = 1\n"}
    )
    await panel.get_by_label("Destination path").fill("/tmp/deployx-never/app.conf")
    await panel.get_by_label("Mode").fill("0999")
    await sized.get_by_role("checkbox", name="local-1").check()

    await panel.get_by_role("button", name="Execute").click()

    error = panel.locator(".field-error", has_text="Must be an octal mode like 0644 or 755.")
    await expect(error).to_be_visible()
    await expect(panel.get_by_label("Mode")).to_have_attribute("aria-invalid", "true")
    await assert_fits(sized, error)
    assert uploads == [], "the file was uploaded although its mode is wrong"


async def test_the_apis_reasons_read_in_words_beside_the_field(
    sized: Page, console: Console
) -> None:
    panel = sized.locator("[data-panel=command]")
    await panel.get_by_label("Command").fill("true")
    await panel.get_by_role("button", name="Schedule").click()
    modal = sized.get_by_role("dialog", name="Schedule a command task")
    await modal.get_by_label("Cron", exact=True).check()
    cron = modal.get_by_label("Cron expression")

    await cron.fill("61 * * * *")

    error = modal.locator(".field-error", has_text="minute 61 is out of range 0-59")
    await expect(error).to_be_visible()
    await expect(cron).to_have_attribute("aria-invalid", "true")
    await expect(modal).not_to_contain_text("not acceptable")
    await assert_fits(sized, error)
