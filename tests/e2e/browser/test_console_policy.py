"""The console under its Content-Security-Policy: every screen works and nothing is refused."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.e2e.browser.conftest import Console, create_task, new_context

# Recorded from the first byte of every page: what the policy refused, and where.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.__violations.push(`${event.violatedDirective} ${event.blockedURI} ${event.sourceFile}`);
});
"""


async def test_every_screen_runs_under_the_content_policy(
    browser: Browser, console: Console
) -> None:
    task = await create_task(console.api)
    context = await new_context(browser, console.token)
    await context.add_init_script(RECORD_VIOLATIONS)
    page = await context.new_page()
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text))

    response = await page.goto(console.base_url + "/")
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    for route in ("#/dashboard", "#/tasks", f"#/tasks/{task['id']}", "#/devices"):
        await page.goto(f"{console.base_url}/{route}")
        await expect(page.locator("main h1")).to_be_visible()
        assert await page.evaluate("window.__violations") == [], route
    await page.goto(f"{console.base_url}/#/dashboard")
    panel = page.locator("[data-panel=command]")
    await panel.get_by_label("Command").fill("true")
    await page.get_by_role("checkbox", name="local-1").check()
    await panel.get_by_role("button", name="Schedule").click()
    await expect(page.get_by_role("dialog", name="Schedule a command task")).to_be_visible()
    # The charts' axis is laid out by a style set from script, which the policy must let be.
    await page.goto(f"{console.base_url}/#/tasks")
    ticks = page.locator(".chart-ticks").first
    await expect(ticks).to_be_attached()
    columns = await ticks.evaluate("(node) => getComputedStyle(node).gridTemplateColumns")
    assert len(columns.split()) == await ticks.locator("span").count() > 1, columns

    assert await page.evaluate("window.__violations") == []
    assert [text for text in refused if "Content Security Policy" in text] == []
    await context.close()
