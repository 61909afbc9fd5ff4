"""The console's sign-in, file deployment, devices and groups, live feed and layout."""

from __future__ import annotations

import asyncio
import re

from playwright.async_api import Browser, Page, Route, expect

from tests.e2e.browser.conftest import DEVICES, Console, create_task, new_context, snap, tag
from tests.e2e.processes import deployx_command


async def new_token(console: Console, user: str, role: str) -> str:
    """`deployx token create`, finding the running system through its data directory."""
    process = await asyncio.create_subprocess_exec(
        *deployx_command(),
        "token", "create", "--user", user, "--role", role, "--data-dir", str(console.data_dir),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode == 0
    return out.decode().strip()


async def test_sign_in_shows_the_user_and_role_and_sign_out_forgets_the_token(
    browser: Browser, console: Console
) -> None:
    context = await new_context(browser, None)
    page = await context.new_page()
    await page.goto(console.base_url + "/")
    token = page.get_by_label("API token")
    await expect(token).to_be_focused()
    await snap(page, "sign-in")

    await token.fill("dx_not-a-real-token")
    await page.keyboard.press("Enter")
    await expect(page.locator(".field-error")).to_contain_text("This token is not valid")
    await expect(token).to_have_attribute("aria-invalid", "true")

    await token.fill(console.token)
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Sign in")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#who")).to_have_text("admin admin")
    await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    await expect(page.locator("#live-status")).to_have_text("Live")

    # Kept for the session: a reload stays signed in.
    await page.reload()
    await expect(page.locator("#who")).to_have_text("admin admin")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("API token")).to_be_visible()
    await expect(page.get_by_text("You signed out.")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('deployx.token')") is None

    # A viewer sees its name and role, and the write buttons are off.
    viewer = f"vera-{tag()}"
    await page.get_by_label("API token").fill(await new_token(console, viewer, "viewer"))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#who")).to_have_text(f"{viewer} viewer")
    await expect(page.get_by_text("The viewer role may only read")).to_be_visible()
    command = page.locator("[data-panel=command]")
    await expect(command.get_by_role("button", name="Execute")).to_be_disabled()
    await context.close()


async def test_a_file_is_uploaded_with_progress_and_deployed_to_a_device(
    page: Page, console: Console
) -> None:
    content = b"".join(b"setting_%05d = on\n" % n for n in range(20_000))  # ~370 KB
    # Into the demo agent's own directory: under root it runs as an unprivileged user.
    destination = console.data_dir / "agents" / "local-1" / "deployed" / tag() / "app.conf"
    panel = page.locator("[data-panel=file_deployment]")
    await panel.get_by_label("File", exact=True).set_input_files(
        {"name": "app.conf", "mimeType": "text/plain", "buffer": content}
    )
    await panel.get_by_label("Destination path").fill(str(destination))
    await page.get_by_role("checkbox", name="local-1").check()

    # Schedule uploads the file first (progress bar), then opens the modal; Escape closes it.
    schedule = panel.get_by_role("button", name="Schedule")
    await schedule.click()
    modal = page.get_by_role("dialog", name="Schedule a file task")
    await expect(modal).to_be_visible()
    await expect(modal.locator(".stored-file")).to_contain_text("app.conf")
    await expect(panel.locator("progress")).to_have_attribute("value", "100")
    await expect(panel.locator(".upload-status")).to_contain_text("Uploaded app.conf")
    await page.keyboard.press("Escape")
    await expect(modal).to_have_count(0)
    await expect(schedule).to_be_focused()

    # Execute runs it now as an ad-hoc run (no task; the file is not uploaded again) and
    # follows the run on its page.
    await panel.get_by_role("button", name="Execute").click()
    await expect(page).to_have_url(re.compile(r"#/executions/[0-9a-f-]{36}$"))
    result = page.locator('.device-result[data-device="local-1"]')
    await expect(result.locator(".badge")).to_have_text("success")
    assert destination.read_bytes() == content
    await expect(page.locator(".detail-title .badge").first).to_have_text("success")
    await expect(page.locator(".detail-title .badge.trigger")).to_have_text("ad hoc")


async def test_devices_show_their_state_and_groups_are_created_renamed_and_edited(
    page: Page, console: Console
) -> None:
    await page.get_by_role("link", name="Devices", exact=True).first.click()
    for device in DEVICES:
        row = page.locator(f'tr[data-device="{device}"]')
        await expect(row.locator(".state")).to_have_text("online")
        await expect(row.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-"))

    name, renamed = f"web-{tag()}", f"frontend-{tag()}"
    await page.get_by_role("button", name="New group").click()
    dialog = page.get_by_role("dialog", name="New group")
    await dialog.get_by_role("button", name="Create group").click()
    await expect(dialog.locator(".field-error").first).to_have_text("Give the group a name.")
    await dialog.get_by_label("Group name").fill(name)
    await dialog.get_by_role("checkbox", name="local-1").check()
    await dialog.get_by_role("button", name="Create group").click()
    card = page.locator("article.group-card", has_text=name)
    await expect(card.locator(".member")).to_have_count(1)

    await card.get_by_role("button", name=f"Edit group {name}").click()
    dialog = page.get_by_role("dialog", name=f"Edit group “{name}”")
    await dialog.get_by_label("Group name").fill(renamed)
    await dialog.get_by_role("checkbox", name="local-2").check()
    await dialog.get_by_role("button", name="Save group").click()
    card = page.locator("article.group-card", has_text=renamed)
    await expect(card.locator(".member")).to_have_count(2)
    await expect(card.locator(".member .state")).to_have_text(["online", "online"])

    _, groups = await console.api.get("/api/groups")
    [group] = [item for item in groups["items"] if item["name"] == renamed]
    assert group["device_ids"] == ["local-1", "local-2"]
    await snap(page, "devices", full_page=True)

    # The dashboard's picker offers the group, with its members' state.
    await page.get_by_role("link", name="Dashboard", exact=True).first.click()
    await expect(page.get_by_role("checkbox", name=renamed)).to_be_visible()


async def test_the_live_feed_reconnects_after_a_drop_and_updates_the_list(
    browser: Browser, console: Console
) -> None:
    context = await new_context(browser, console.token)
    page = await context.new_page()
    streams = 0
    seen_reconnecting = asyncio.Event()

    async def end_the_first_stream(route: Route) -> None:
        """The first stream ends at once, as when a proxy or the server drops it; the next one
        goes through once the test has seen the console say it is reconnecting."""
        nonlocal streams
        streams += 1
        if streams == 1:
            await route.fulfill(content_type="text/event-stream", body="retry: 2000\n\n")
        else:
            await seen_reconnecting.wait()
            await route.continue_()

    await page.route("**/api/live", end_the_first_stream)
    await page.goto(f"{console.base_url}/#/tasks")
    pill = page.locator("#live-status")
    await expect(pill).to_have_text("Reconnecting\N{HORIZONTAL ELLIPSIS}")
    seen_reconnecting.set()
    await expect(pill).to_have_text("Live")
    assert streams == 2

    # Changes made elsewhere arrive without a reload.
    team = f"live-{tag()}"
    await page.get_by_label("Search").fill(team)
    await expect(page.get_by_text("No task matches these filters.")).to_be_visible()
    task = await create_task(console.api, name=f"Made elsewhere {team}")
    card = page.locator("article.task-card", has_text=task["name"])
    await expect(card).to_be_visible()
    status, _ = await console.api.post(f"/api/schedule/tasks/{task['id']}/pause")
    assert status == 200
    await expect(card.locator(".badge").first).to_have_text("paused")
    await context.close()


async def test_the_console_fits_a_phone(browser: Browser, console: Console) -> None:
    context = await new_context(
        browser, console.token, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    page = await context.new_page()
    for route in ("#/dashboard", "#/tasks", "#/devices"):
        await page.goto(f"{console.base_url}/{route}")
        await expect(page.locator("main h1")).to_be_visible()
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{route} is {overflow}px wider than the phone"
    await page.goto(f"{console.base_url}/#/dashboard")
    await expect(page.get_by_role("checkbox", name="local-1")).to_be_visible()
    await snap(page, "dashboard-phone")
    await context.close()


QUOTES = ("\N{LEFT DOUBLE QUOTATION MARK}", "\N{RIGHT DOUBLE QUOTATION MARK}")
SCHEDULES_IN_WORDS = [
    ("custom", {"cron": "0 8,12,18 * * 1-5", "timezone": "Europe/Berlin"},
     "Weekdays at 08:00, 12:00, 18:00 Europe/Berlin"),
    ("custom", {"cron": "*/15 * * * *"}, "Every 15 minutes UTC"),
    ("custom", {"cron": "30 2 1,15 * *"}, "Monthly on the 1st, 15th at 02:30 UTC"),
    ("custom", {"cron": "0 0 L * *"}, "Cron {}0 0 L * *{} UTC".format(*QUOTES)),
    ("weekly", {"time": "09:00", "days": [1, 3, 5], "timezone": "America/New_York"},
     "Every Mon, Wed, Fri at 09:00 America/New_York"),
    ("weekly", {"time": "09:00", "days": [6, 7]}, "Weekends at 09:00 UTC"),
    ("weekly", {"time": "09:00", "days": [1, 2, 3, 4]}, "Mon\N{EN DASH}Thu at 09:00 UTC"),
    ("daily", {"time": "14:00:00", "timezone": "Asia/Tokyo"}, "Every day at 14:00 Asia/Tokyo"),
    ("monthly", {"time": "12:00", "day_of_month": 2}, "Monthly on the 2nd at 12:00 UTC"),
    ("once", {"run_at": "2026-12-01T14:00:00+01:00", "timezone": "Europe/Berlin"},
     "Once, on Tue 1 Dec 2026 at 14:00 Europe/Berlin"),
    ("once", {"run_at": "2026-12-01T14:00", "timezone": "Asia/Tokyo"},
     "Once, on Tue 1 Dec 2026 at 14:00 Asia/Tokyo"),
    ("interval", {"every_seconds": 300}, "Every 5 minutes"),
    ("interval", {"every_seconds": 90}, "Every 90 seconds"),
    ("interval", {"every_seconds": 3600, "start_at": "2026-12-01T14:00:00Z"},
     "Every hour, from Tue, 1 Dec 2026, 15:00 CET"),
]  # fmt: skip


async def test_schedules_in_words_and_the_live_parser_in_the_browser(page: Page) -> None:
    """The console's own modules, run by the browser itself."""
    words = await page.evaluate(
        """async (cases) => {
            const { describeSchedule } = await import('/web/js/schedule-words.js');
            return cases.map(([type, config]) => describeSchedule(type, config));
        }""",
        [[kind, config] for kind, config, _ in SCHEDULES_IN_WORDS],
    )
    assert words == [expected for _, _, expected in SCHEDULES_IN_WORDS]

    # A message split across reads, CRLF line ends, comments and retry lines.
    messages = await page.evaluate(
        """async () => {
            const { SseParser } = await import('/web/js/live.js');
            const parser = new SseParser();
            const chunks = ['retry: 2000\\n\\n: keep-alive\\n\\nevent: TaskCreated\\nid: 5\\nda',
                            'ta: {"a":\\r\\ndata: 1}\\r\\n\\r\\nevent: TaskPaused\\n'];
            return chunks.flatMap((chunk) => parser.feed(chunk));
        }"""
    )
    assert messages == [{"event": "TaskCreated", "id": "5", "data": '{"a":\n1}'}]
