"""The console's task screens: scheduling through the modal, running, pausing, finding, deleting."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from playwright.async_api import Page, expect

from tests.e2e.browser.conftest import BROWSER_ZONE, TASKS, Console, create_task, snap, tag


def next_weekly_run(days: set[int], at: time, zone: str, after: datetime) -> datetime:
    """The first instant after `after` that falls on one of `days` (Monday = 0) at `at` in zone,
    worked out on its own, not by the code under test."""
    local = after.astimezone(ZoneInfo(zone))
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        candidate = datetime.combine(day, at, tzinfo=ZoneInfo(zone))
        if day.weekday() in days and candidate > after:
            return candidate.astimezone(UTC)
    raise AssertionError("no run within a week")


def iso(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_a_weekly_command_scheduled_in_the_modal_runs_and_shows_its_output_live(
    page: Page, console: Console
) -> None:
    name = f"Weekly disk report {tag()}"
    panel = page.locator("[data-panel=command]")
    await panel.get_by_label("Command").fill(
        'echo "disk report from $DEPLOYX_DEVICE_ID"; sleep 2; echo "warning: demo" >&2'
    )
    await page.get_by_role("checkbox", name="local-1").check()
    await page.get_by_role("checkbox", name="local-2").check()
    await snap(page, "dashboard")
    await panel.get_by_role("button", name="Schedule").click()

    modal = page.get_by_role("dialog", name="Schedule a command task")
    await expect(modal).to_be_visible()
    await expect(modal.get_by_label("Task name")).to_be_focused()
    await modal.get_by_label("Task name").fill(name)
    await modal.get_by_label("Weekly").check()
    # Weekdays are on by default: leave Tuesday and Thursday.
    for day in ("Monday", "Wednesday", "Friday"):
        await modal.get_by_role("button", name=day).click()
    tuesday = modal.get_by_role("button", name="Tuesday")
    await expect(tuesday).to_have_attribute("aria-pressed", "true")
    await modal.get_by_label("Time of day").fill("07:30")
    await modal.get_by_label("Time zone").select_option("America/New_York")

    # No day at all: the API's 422 appears beside the days.
    for day in ("Tuesday", "Thursday"):
        await modal.get_by_role("button", name=day).click()
    days_error = modal.locator(".field-error", has_text="must be a non-empty list")
    await expect(days_error).to_be_visible()
    for day in ("Tuesday", "Thursday"):
        await modal.get_by_role("button", name=day).click()
    await expect(days_error).to_be_hidden()

    expected = next_weekly_run({1, 3}, time(7, 30), "America/New_York", datetime.now(UTC))
    preview = modal.locator(".preview-list time")
    await expect(preview).to_have_count(5)
    await expect(preview.first).to_have_attribute("datetime", iso(expected))
    await expect(modal.locator(".preview-words")).to_have_text(
        "Every Tue, Thu at 07:30 America/New_York"
    )
    await snap(page, "schedule-modal")
    await modal.get_by_role("button", name="Schedule task").click()

    # The tasks manager, with the new task first and its next run worked out above.
    await expect(page).to_have_url(re.compile(r"#/tasks$"))
    card = page.locator("article.task-card", has_text=name)
    await expect(card.locator(".badge")).to_have_text("pending")
    await expect(card.locator(".schedule-words")).to_have_text(
        "Every Tue, Thu at 07:30 America/New_York"
    )
    next_run = card.locator(".next-run time")
    await expect(next_run).to_have_attribute("datetime", iso(expected))
    berlin = expected.astimezone(ZoneInfo(BROWSER_ZONE))
    await expect(next_run).to_contain_text(berlin.strftime("%H:%M"))

    # Its page: run it now, and watch each device's output arrive without a reload.
    await card.get_by_role("link", name=name).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(name)
    await page.get_by_role("button", name=f"Execute {name}").click()
    run = page.locator("li.run").first
    await expect(run).to_have_attribute("data-status", "running")
    for device in ("local-1", "local-2"):
        result = run.locator(f'.device-result[data-device="{device}"]')
        await expect(result.locator("pre.stdout")).to_have_text(f"disk report from {device}")
        await expect(result.locator("pre.stderr")).to_have_text("warning: demo")
        await expect(result.locator(".exit-code")).to_have_text("exit code 0")
    await expect(run).to_have_attribute("data-status", "success")
    await expect(run.locator(".run-counts")).to_have_text("2/2 succeeded")

    # The audit history says who did what.
    history = page.locator(".history tbody tr")
    await expect(history.filter(has_text="TaskCreated")).to_contain_text("admin (admin)")
    await expect(history.filter(has_text="TaskDue")).to_contain_text("Run now")
    await snap(page, "task-detail", full_page=True)


async def test_pause_resume_and_edit_from_the_task_list(page: Page, console: Console) -> None:
    task = await create_task(console.api, name=f"Rotate logs {tag()}")
    await page.goto(f"{console.base_url}/#/tasks?q={task['name'].replace(' ', '+')}")
    card = page.locator("article.task-card", has_text=task["name"])
    await expect(card.locator(".next-run time")).to_have_attribute(
        "datetime", task["next_run_time"]
    )

    # By keyboard: the focus stays on the button, which becomes Resume.
    await card.get_by_role("button", name=f"Pause {task['name']}").press("Enter")
    await expect(card.locator(".badge").first).to_have_text("paused")
    resume = card.get_by_role("button", name=f"Resume {task['name']}")
    await expect(resume).to_be_focused()
    await expect(card.locator(".next-run")).to_have_text("paused")
    _, paused = await console.api.get(f"{TASKS}/{task['id']}")
    assert (paused["status"], paused["next_run_time"]) == ("paused", None)

    await resume.click()
    await expect(card.locator(".badge").first).to_have_text("pending")
    _, resumed = await console.api.get(f"{TASKS}/{task['id']}")
    assert resumed["status"] == "pending"
    await expect(card.locator(".next-run time")).to_have_attribute(
        "datetime", resumed["next_run_time"]
    )
    await expect(page.get_by_role("status").filter(has_text="Resumed")).to_be_visible()

    # Edit opens the same modal, filled in; a new time moves the next run.
    await card.get_by_role("button", name=f"Edit {task['name']}").click()
    modal = page.get_by_role("dialog", name=f"Edit \N{LEFT DOUBLE QUOTATION MARK}{task['name']}")
    await expect(modal.get_by_label("Task name")).to_have_value(task["name"])
    await expect(modal.get_by_label("Daily")).to_be_checked()
    await expect(modal.get_by_label("Command")).to_have_value("true")
    await modal.get_by_label("Time of day").fill("05:15")
    await modal.get_by_label("Time zone").select_option("Europe/Berlin")
    await expect(modal.locator(".preview-words")).to_have_text("Every day at 05:15 Europe/Berlin")
    await modal.get_by_role("button", name="Save changes").click()
    await expect(modal).to_have_count(0)
    await expect(card.locator(".schedule-words")).to_have_text("Every day at 05:15 Europe/Berlin")
    _, edited = await console.api.get(f"{TASKS}/{task['id']}")
    assert edited["recurrence_config"] == {"time": "05:15", "timezone": "Europe/Berlin"}
    await expect(card.locator(".next-run time")).to_have_attribute(
        "datetime", edited["next_run_time"]
    )


async def test_search_filters_and_pages_of_tasks(page: Page, console: Console) -> None:
    team = f"team-{tag()}"
    # Real-looking tasks on every kind of schedule (they also make the tasks screenshot).
    schedules: list[tuple[str, str, dict[str, Any]]] = [
        ("Nightly apt update", "daily", {"time": "02:30", "timezone": "Europe/Berlin"}),
        ("Disk usage report", "custom", {"cron": "0 8,12,18 * * 1-5", "timezone": "Europe/Berlin"}),
        ("Rotate nginx logs", "weekly", {"time": "04:00", "days": [0]}),
        ("Clear /tmp", "interval", {"every_seconds": 21600}),
        ("Check NTP drift", "custom", {"cron": "*/15 * * * *"}),
        ("Sync backups", "monthly", {"time": "01:00", "day_of_month": 31, "timezone": "UTC"}),
        ("Restart workers", "weekly", {"time": "05:00", "days": [1, 3], "timezone": "Asia/Tokyo"}),
        ("Vacuum analytics DB", "monthly", {"time": "03:00", "day_of_month": 1}),
        ("Refresh TLS certificates", "once", {"run_at": "2030-01-15T09:00:00+00:00"}),
        ("Collect inventory", "daily", {"time": "06:00", "timezone": "America/New_York"}),
        ("Prune docker images", "weekly", {"time": "23:00", "days": [6, 0]}),
    ]  # fmt: skip
    created = [
        await create_task(
            console.api,
            name=name,
            description=f"Ops chores of {team}",
            recurrence_type=kind,
            recurrence_config=config,
        )
        for name, kind, config in schedules
    ]
    software = await create_task(
        console.api,
        name="Upgrade nginx",
        description=f"Ops chores of {team}",
        task_type="software_deployment",
        task_payload={"software_payload": {"package": "nginx", "action": "upgrade"}},
    )
    status, _ = await console.api.post(f"{TASKS}/{created[2]['id']}/pause")
    assert status == 200
    failing = await create_task(
        console.api,
        name="Check a failing service",
        description=f"Ops chores of {team}",
        task_payload={"command_payload": {"command": "echo 'service down' >&2; exit 3"}},
    )
    status, _ = await console.api.post(f"{TASKS}/{failing['id']}/execute")
    assert status == 202

    await page.goto(f"{console.base_url}/#/tasks")
    await page.get_by_label("Search").fill(team)
    cards = page.locator("article.task-card")
    await expect(page.locator(".list-count")).to_have_text("Showing 1\N{EN DASH}10 of 13 tasks")
    await expect(cards).to_have_count(10)
    await expect(cards.first).to_contain_text("Check a failing service")
    # The failed run reaches the stats and the chart, live.
    await expect(cards.first.locator(".last-run .badge")).to_have_text("failed")
    await expect(page.locator(".chart .bar-fail").first).to_be_visible()
    await snap(page, "tasks", full_page=True)

    await page.get_by_role("button", name="Next →").click()
    await expect(page.locator(".pager-text")).to_have_text("Page 2 of 2")
    await expect(cards).to_have_count(3)
    await expect(page).to_have_url(re.compile(r"page=2"))

    await page.get_by_label("Status").select_option("paused")
    await expect(cards).to_have_count(1)
    await expect(cards.first).to_contain_text("Rotate nginx logs")

    await page.get_by_label("Status").select_option("")
    await page.get_by_label("Type").select_option("software_deployment")
    await expect(cards).to_have_count(1)
    await expect(cards.first).to_contain_text(software["name"])

    await page.get_by_role("button", name="Clear filters").click()
    await page.get_by_label("Search").fill(f"{team} nothing like this")
    await expect(page.get_by_text("No task matches these filters.")).to_be_visible()

    # The search stays in the address: a reload shows the same list.
    await page.get_by_label("Search").fill("Vacuum analytics")
    await expect(cards).to_have_count(1)
    await page.reload()
    await expect(page.get_by_label("Search")).to_have_value("Vacuum analytics")
    await expect(cards).to_have_count(1)


async def test_delete_asks_first_and_then_the_task_is_gone(page: Page, console: Console) -> None:
    task = await create_task(console.api, name=f"Old cleanup {tag()}")
    await page.goto(f"{console.base_url}/#/tasks?q={task['name'].replace(' ', '+')}")
    card = page.locator("article.task-card", has_text=task["name"])
    delete = card.get_by_role("button", name=f"Delete {task['name']}")

    await delete.click()
    confirm = page.get_by_role("dialog", name="Delete this task?")
    await expect(confirm).to_be_visible()
    await confirm.get_by_role("button", name="Cancel").click()
    await expect(confirm).to_be_hidden()
    await expect(card).to_be_visible()

    await delete.click()
    await (
        page.get_by_role("dialog", name="Delete this task?")
        .get_by_role("button", name="Delete task")
        .click()
    )
    await expect(card).to_have_count(0)
    await expect(page.get_by_text("No task matches these filters.")).to_be_visible()
    status, _ = await console.api.get(f"{TASKS}/{task['id']}")
    assert status == 404

    await page.goto(f"{console.base_url}/#/tasks/{task['id']}")
    await expect(page.get_by_role("alert")).to_have_text(
        "This task does not exist, or it was deleted."
    )
