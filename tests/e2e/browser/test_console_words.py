"""What the console says, at desktop and phone size: field errors in words (issue 14 point 3),
times that name their zone (point 2), and history that shows what changed (point 7)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Locator, Page, expect

from tests.e2e.browser.conftest import BROWSER_ZONE, TASKS, Console, create_task, new_context, tag

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


async def assert_fits(page: Page, element: Locator, *, scroll: bool = False) -> None:
    """`element` is on screen after the action (after scrolling to it, for what is read rather
    than the answer to a click), and neither it nor the page is wider than the window."""
    if scroll:
        await element.scroll_into_view_if_needed()
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


# --- point 2: every time says its zone; the user picks the zone ---------------------------------


def next_weekly(days: set[int], hour: int, minute: int, zone: str) -> datetime:
    """The next occurrence after now of `days` (Monday = 0) at hour:minute in zone, in UTC,
    worked out here rather than by the code under test."""
    local = datetime.now(ZoneInfo(zone))
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        candidate = datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(zone))
        if day.weekday() in days and candidate > local:
            return candidate.astimezone(UTC)
    raise AssertionError("no occurrence within a week")


def shown_in(instant: datetime, zone: str) -> str:
    """ "14:15 CET": the wall clock and the zone's short name as Chromium's en-GB writes it."""
    local = instant.astimezone(ZoneInfo(zone))
    names = {"UTC": "UTC", "Asia/Kolkata": "GMT+5:30"}
    return f"{local:%H:%M} {names.get(zone) or local.tzname()}"


async def test_times_name_their_zone_and_the_user_picks_it(sized: Page, console: Console) -> None:
    task = await create_task(
        console.api,
        name=f"Zones {tag()}",
        recurrence_type="weekly",
        recurrence_config={"time": "08:15", "days": [2, 5], "timezone": "America/New_York"},
    )
    expected = next_weekly({1, 4}, 8, 15, "America/New_York")
    await sized.goto(f"{console.base_url}/#/tasks?q={task['name'].replace(' ', '+')}")
    card = sized.locator("article.task-card", has_text=task["name"])
    next_run = card.locator(".next-run time")

    # By default the browser's zone, named; the task's own wall clock beside it.
    await expect(next_run).to_have_attribute(
        "datetime", re.compile(expected.strftime("%Y-%m-%dT%H:%M"))
    )
    await expect(next_run).to_contain_text(shown_in(expected, BROWSER_ZONE))
    await expect(card.locator(".next-run .task-zone-time")).to_have_text(
        re.compile(r" · (\w{3} )?08:15 America/New_York$")
    )
    await assert_fits(sized, card.locator(".next-run"), scroll=True)

    # The picker: searchable, current names only, the browser's zone first.
    await sized.get_by_role("button", name=f"Times shown in {BROWSER_ZONE}: change").click()
    dialog = sized.get_by_role("dialog", name="Show times in")
    select = dialog.get_by_label("Time zone")
    values = await select.locator("option").evaluate_all("options => options.map(o => o.value)")
    assert values[:3] == ["browser", BROWSER_ZONE, values[2]] and values[2] != BROWSER_ZONE
    assert {"Asia/Kolkata", "Europe/Kyiv", "UTC"} <= set(values)
    assert not {"Asia/Calcutta", "Europe/Kiev"} & set(values)
    search = dialog.get_by_role("searchbox", name="Search zones")
    await search.fill("kolk")
    await expect(dialog.locator(".zone-count")).to_have_text("1 zone matches")
    await expect(select).to_have_value("Asia/Kolkata")  # the first match, as typed
    await search.fill("new_y")
    await expect(select).to_have_value("America/New_York")
    await search.fill("kolk")
    await search.press("Enter")
    await expect(select).to_have_value("Asia/Kolkata")
    await dialog.get_by_role("button", name="Show times").click()
    await expect(dialog).to_have_count(0)

    await expect(next_run).to_contain_text(shown_in(expected, "Asia/Kolkata"))
    await expect(card.locator(".next-run .task-zone-time")).to_contain_text(
        "08:15 America/New_York"
    )
    # Remembered: a new page load shows the same zone.
    await sized.reload()
    await expect(
        sized.get_by_role("button", name="Times shown in Asia/Kolkata: change")
    ).to_be_visible()
    await expect(next_run).to_contain_text(shown_in(expected, "Asia/Kolkata"))

    await sized.get_by_role("button", name="Times shown in Asia/Kolkata: change").click()
    await dialog.get_by_label("Time zone").select_option("UTC")
    await dialog.get_by_role("button", name="Show times").click()
    await expect(next_run).to_contain_text(shown_in(expected, "UTC"))
    await assert_fits(sized, card.locator(".next-run"), scroll=True)


async def test_every_zone_offered_is_a_current_name_the_browser_can_show(page: Page) -> None:
    found = await page.evaluate(
        """async () => {
            const { allTimeZones, browserTimeZone } = await import('/web/js/format.js');
            const zones = allTimeZones();
            const unusable = zones.filter((zone) => {
                try { new Intl.DateTimeFormat('en', { timeZone: zone }); return false; }
                catch { return true; }
            });
            return { zones, unusable, browser: browserTimeZone() };
        }"""
    )
    legacy = {"Asia/Calcutta", "Europe/Kiev", "Asia/Saigon", "America/Godthab", "Pacific/Truk"}
    assert found["unusable"] == []
    assert {"Asia/Kolkata", "Europe/Kyiv", "Asia/Ho_Chi_Minh", "America/Nuuk", "UTC"} <= set(
        found["zones"]
    )
    assert not legacy & set(found["zones"])
    assert found["browser"] == BROWSER_ZONE


async def test_editing_a_run_now_task_keeps_its_zone(sized: Page, console: Console) -> None:
    run_at = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)
    # What the console's Execute used to create: a one-time task in UTC; its run_at written
    # with another offset, which the modal must read as the UTC wall clock.
    kolkata = run_at.astimezone(ZoneInfo("Asia/Kolkata"))
    task = await create_task(
        console.api,
        name=f"Run now: uptime {tag()}",
        recurrence_type="once",
        recurrence_config={"run_at": kolkata.isoformat(), "timezone": "UTC"},
    )
    await sized.goto(f"{console.base_url}/#/tasks?q={task['name'].replace(' ', '+')}")
    card = sized.locator("article.task-card", has_text=task["name"])
    await card.get_by_role("button", name=f"Edit {task['name']}").click()
    modal = sized.get_by_role("dialog", name=f"Edit “{task['name']}”")

    await expect(modal.get_by_label("Time zone")).to_have_value("UTC")
    await expect(modal.get_by_label("Date")).to_have_value(f"{run_at:%Y-%m-%d}")
    await expect(modal.get_by_label("Time", exact=True)).to_have_value(f"{run_at:%H:%M}")
    await modal.get_by_label("Task name").fill(f"{task['name']} renamed")
    await modal.get_by_role("button", name="Save changes").click()
    await expect(modal).to_have_count(0)

    status, saved = await console.api.get(f"{TASKS}/{task['id']}")
    assert status == 200, saved
    assert saved["name"] == f"{task['name']} renamed"
    assert saved["recurrence_config"] == task["recurrence_config"]


# --- point 7: history with seconds, and each change's old and new value -------------------------


async def test_the_history_shows_seconds_and_each_change_in_words(
    sized: Page, console: Console
) -> None:
    task = await create_task(
        console.api,
        name=f"Nightly {tag()}",
        recurrence_config={"time": "02:00", "timezone": "UTC"},
    )
    patch = {
        "name": f"{task['name']} v2",
        "recurrence_type": "weekly",
        "recurrence_config": {"time": "03:00", "days": [1], "timezone": "UTC"},
        "max_runs": 5,
    }
    status, body = await console.api.put(f"{TASKS}/{task['id']}", patch)
    assert status == 200, body
    await sized.goto(f"{console.base_url}/#/tasks/{task['id']}")

    edit = sized.locator('.history tr[data-event="TaskUpdated"]')
    changes = edit.locator(".changes li")
    await expect(changes).to_have_text(
        [
            "Schedule: Every day at 02:00 UTC → Every Monday at 03:00 UTC",
            f"Name: “{task['name']}” → “{task['name']} v2”",
            "Run limit: no limit → after 5 runs",
        ]
    )
    await expect(edit.locator("time")).to_have_text(re.compile(r"\d\d:\d\d:\d\d (CET|CEST)$"))
    await expect(sized.locator('.history tr[data-event="TaskCreated"] time')).to_have_text(
        re.compile(r"\d\d:\d\d:\d\d (CET|CEST)$")
    )
    await changes.first.scroll_into_view_if_needed()
    await expect(changes.first).to_be_visible()
    overflow = await sized.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page is {overflow}px wider than the window"

    # The audit log's times carry seconds too.
    await sized.goto(f"{console.base_url}/#/audit?task_id={task['id']}")
    await expect(sized.locator(".audit-table tbody tr")).to_have_count(2)
    await expect(sized.locator(".audit-table tbody time").first).to_have_text(
        re.compile(r"\d\d:\d\d:\d\d (CET|CEST)$")
    )
