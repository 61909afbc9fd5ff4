"""The console's runs: one run's live device statuses, cancel and rerun; runs across tasks."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from tests.e2e.browser.conftest import (
    DEVICES,
    TASKS,
    Console,
    create_task,
    new_context,
    snap,
    tag,
)
from tests.e2e.processes import wait_until


async def test_a_run_shows_each_device_live_cancels_and_reruns_the_failed(
    page: Page, console: Console
) -> None:
    # One device at a time: local-1 runs while local-2 waits its turn as pending. The job
    # ignores SIGTERM, so a cancel takes the agent's 5 s to SIGKILL: long enough to see it.
    task = await create_task(
        console.api,
        name=f"Slow rollout {tag()}",
        delivery={"waves": [1]},
        task_payload={"command_payload": {"command": "trap '' TERM; sleep 120"}},
    )
    status, started = await console.api.post(f"{TASKS}/{task['id']}/execute")
    assert status == 202, started
    run_id = started["execution_id"]

    await page.goto(f"{console.base_url}/#/executions/{run_id}")
    await expect(page.get_by_role("heading", level=1)).to_have_text(task["name"])
    await expect(page.locator('.device-result[data-device="local-1"]')).to_have_attribute(
        "data-status", "running"
    )
    await expect(page.locator('.device-result[data-device="local-2"]')).to_have_attribute(
        "data-status", "pending"
    )
    await expect(page.locator(".delivery-words")).to_contain_text("1 device first")
    await snap(page, "run-view")

    # Cancel asks first; then the run says canceling and ends canceled.
    await page.get_by_role("button", name="Cancel run").click()
    dialog = page.get_by_role("dialog", name="Cancel this run?")
    await dialog.get_by_role("button", name="Cancel run").click()
    await expect(page.locator(".canceling")).to_have_text("canceling…")
    await expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    await expect(page.locator(".detail-title .badge").first).to_have_text("canceled")
    await expect(page.locator('.device-result[data-device="local-2"]')).to_have_attribute(
        "data-status", "canceled"
    )
    status, run = await console.api.get(f"/api/executions/{run_id}")
    assert run["status"] == "canceled" and run["cancel_requested_at"], run

    # Rerun failed: a new run, linked both ways.
    await page.get_by_role("button", name="Rerun failed").click()
    await expect(page).not_to_have_url(re.compile(run_id))
    rerun_of = page.locator("a.rerun-of")
    await expect(rerun_of).to_have_attribute("href", f"#/executions/{run_id}")
    new_id = page.url.rsplit("/", 1)[1]
    status, rerun = await console.api.get(f"/api/executions/{new_id}")
    assert rerun["trigger"] == "rerun" and rerun["rerun_of"] == run_id, rerun
    await expect(page.locator(".detail-title .badge.trigger")).to_have_text("rerun")
    await expect(page.get_by_role("button", name="Cancel run")).to_be_visible()
    await page.get_by_role("button", name="Cancel run").click()
    await page.get_by_role("dialog").get_by_role("button", name="Cancel run").click()
    await expect(page.locator(".detail-title .badge").first).to_have_text("canceled")
    await rerun_of.click()
    await expect(page.locator("a.rerun-as")).to_have_attribute("href", f"#/executions/{new_id}")

    # The task's page links each run to its own page.
    await page.goto(f"{console.base_url}/#/tasks/{task['id']}?run={run_id}")
    first_run = page.locator(f'li.run[data-execution-id="{run_id}"]')
    await expect(first_run.locator("a.open-run")).to_be_visible()
    await expect(first_run.get_by_role("button", name="Rerun failed")).to_be_visible()
    await expect(first_run.locator('.device-result[data-device="local-2"]')).to_have_attribute(
        "data-status", "canceled"
    )


async def test_the_executions_page_lists_runs_across_tasks_with_filters(
    page: Page, console: Console, browser: Browser
) -> None:
    name = f"Hotfix check {tag()}"
    status, adhoc = await console.api.post(
        "/api/executions",
        {
            "name": name,
            "task_type": "command",
            "task_payload": {"command_payload": {"command": "echo adhoc"}},
            "device_ids": ["local-2"],
        },
    )
    assert status == 202, adhoc
    failing = await create_task(
        console.api,
        name=f"Failing {tag()}",
        device_ids=["local-1"],
        task_payload={"command_payload": {"command": "exit 3"}},
    )
    status, failed_run = await console.api.post(f"{TASKS}/{failing['id']}/execute")
    assert status == 202

    await page.goto(f"{console.base_url}/#/executions")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Executions")
    row = page.locator("tr.run-row", has_text=name)
    await expect(row).to_contain_text("ad hoc")
    await expect(row).to_have_attribute("data-status", "success")
    await snap(page, "executions")

    # Trigger: only ad-hoc runs; the filter is kept in the address.
    await page.get_by_label("Trigger").select_option("adhoc")
    await expect(page).to_have_url(re.compile(r"trigger=adhoc"))
    await expect(row).to_be_visible()
    await expect(
        page.locator("tr.run-row .run-trigger").filter(has_not_text="ad hoc")
    ).to_have_count(0)
    # Device local-1: the ad-hoc run on local-2 is gone.
    await page.get_by_label("Trigger").select_option("")
    await page.get_by_label("Device").select_option("local-1")
    await expect(row).to_have_count(0)
    # Task and status: the failed run of the failing task.
    await page.get_by_label("Task").select_option(failing["id"])
    await page.get_by_label("Status").select_option("failed")
    failed_row = page.locator(f'tr.run-row[data-execution-id="{failed_run["execution_id"]}"]')
    await expect(failed_row).to_be_visible()
    await expect(page.locator("tr.run-row")).to_have_count(1)
    await page.reload()
    await expect(page.get_by_label("Status")).to_have_value("failed")
    await expect(failed_row).to_be_visible()
    await failed_row.get_by_role("link").click()
    await expect(page.get_by_role("button", name="Rerun failed")).to_be_visible()

    # A phone: the list fits the screen.
    context = await new_context(
        browser, console.token, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    phone = await context.new_page()
    await phone.goto(f"{console.base_url}/#/executions")
    await expect(phone.locator("tr.run-row").first).to_be_visible()
    overflow = await phone.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the executions page is {overflow}px wider than the phone"
    await snap(phone, "executions-phone")
    await phone.goto(f"{console.base_url}/#/executions/{failed_run['execution_id']}")
    await expect(phone.get_by_role("button", name="Rerun failed")).to_be_visible()
    overflow = await phone.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"a run's page is {overflow}px wider than the phone"
    await context.close()


async def test_the_modal_says_how_a_rollout_goes_and_sends_it_as_delivery(
    page: Page, console: Console
) -> None:
    name = f"Careful rollout {tag()}"
    panel = page.locator("[data-panel=command]")
    await panel.get_by_label("Command").fill("uptime")
    await page.get_by_role("checkbox", name="local-1").check()
    await page.get_by_role("checkbox", name="local-2").check()
    await panel.get_by_role("button", name="Schedule").click()
    modal = page.get_by_role("dialog", name="Schedule a command task")
    await modal.get_by_label("Task name").fill(name)
    await modal.get_by_label("Daily").check()

    rollout = modal.locator("fieldset.delivery")
    sentence = rollout.locator(".delivery-sentence")
    await expect(sentence).to_have_text(
        "All devices at once, offline devices are unreachable at once."
    )
    await rollout.get_by_label("Waves").fill("1, 10%")
    await rollout.get_by_label("Error threshold").fill("1")
    await rollout.get_by_label("Offline wait", exact=True).fill("1")
    await rollout.get_by_label("Offline wait unit").select_option(label="hours")
    await expect(sentence).to_have_text(
        "1 device first, then 10 % at a time, stop after 2 failures,"
        " wait up to 1 h for offline devices."
    )
    # Not a number: the API's 422 names delivery.max_concurrency, shown beside that field.
    concurrency = rollout.get_by_label("Max concurrency")
    await concurrency.fill("lots")
    await modal.get_by_role("button", name="Schedule task").click()
    await expect(concurrency).to_have_attribute("aria-invalid", "true")
    await expect(rollout.locator(".field-error:not([hidden])")).to_have_count(1)
    await concurrency.fill("50%")
    await expect(rollout.locator(".field-error:not([hidden])")).to_have_count(0)
    await expect(sentence).to_contain_text("at most 50 % running at once")
    await rollout.scroll_into_view_if_needed()
    await snap(page, "schedule-modal-rollout")
    await modal.get_by_role("button", name="Schedule task").click()
    await expect(page).to_have_url(re.compile(r"#/tasks$"))
    await page.locator("article.task-card", has_text=name).get_by_role("link", name=name).click()
    await expect(page.locator(".delivery-words")).to_have_text(
        "1 device first, then 10 % at a time, at most 50 % running at once,"
        " stop after 2 failures, wait up to 1 h for offline devices"
    )
    # Edit shows the policy as stored, and an unchanged form sends no change.
    await page.get_by_role("button", name=f"Edit {name}").click()
    edit = page.get_by_role("dialog", name=f"Edit “{name}”")
    await expect(edit.get_by_label("Waves")).to_have_value("1, 10%")
    await expect(edit.get_by_label("Max concurrency")).to_have_value("50%")
    await expect(edit.get_by_label("Offline wait", exact=True)).to_have_value("1")
    await expect(edit.get_by_label("Offline wait unit")).to_have_value("3600")
    await edit.get_by_label("Waves").fill("")
    await expect(edit.locator(".delivery-sentence")).to_have_text(
        "At most 50 % running at once, stop after 2 failures, wait up to 1 h for offline devices."
    )
    await edit.get_by_role("button", name="Save changes").click()
    await expect(edit).to_have_count(0)

    status, tasks = await console.api.get(f"{TASKS}?q={name.split()[-1]}")
    assert status == 200 and tasks["items"], tasks
    delivery = tasks["items"][0]["delivery"]
    assert delivery == {
        "max_concurrency": "50%",
        "max_errors": 1,
        "offline_wait_seconds": 3600,
    }, delivery


async def test_the_executions_page_goes_page_by_page(page: Page, console: Console) -> None:
    for n in range(21):
        status, started = await console.api.post(
            "/api/executions",
            {
                "name": f"Batch {n:02d} {tag()}",
                "task_type": "command",
                "task_payload": {"command_payload": {"command": "true"}},
                "device_ids": ["local-1"],
            },
        )
        assert status == 202, started
    await page.goto(f"{console.base_url}/#/executions?trigger=adhoc")
    rows = page.locator("tr.run-row")
    await expect(rows).to_have_count(20)
    first_page = await rows.first.get_attribute("data-execution-id")
    await page.get_by_role("button", name="Older →").click()
    await expect(page).to_have_url(re.compile(r"trigger=adhoc&page=2"))
    await expect(page.locator(".pager-text")).to_have_text(re.compile(r"^Page 2 of \d+$"))
    await expect(rows.first).not_to_have_attribute("data-execution-id", first_page or "")
    await page.get_by_role("button", name="← Newer").click()
    await expect(rows.first).to_have_attribute("data-execution-id", first_page or "")


def agent_pid(console: Console, device: str) -> int:
    """The pid of this console's demo agent for device (a child of its `deployx up`)."""
    wanted = ["--device-id", device, "--state-dir", str(console.data_dir / "agents" / device)]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue  # it ended meanwhile
        if any(argv[i : i + len(wanted)] == wanted for i in range(len(argv))):
            return int(entry.name)
    raise AssertionError(f"no agent process for {device}")


async def device_online(console: Console, device: str) -> bool:
    status, devices = await console.api.get("/api/devices")
    assert status == 200, devices
    return any(d["id"] == device and d["online"] for d in devices["items"])


async def test_an_offline_device_waits_in_the_run_and_runs_when_it_is_back(
    page: Page, console: Console
) -> None:
    # local-2's agent stops (SIGSTOP: a laptop that sleeps) until it counts as offline.
    pid = agent_pid(console, "local-2")
    os.kill(pid, signal.SIGSTOP)
    try:

        async def offline() -> bool:
            return not await device_online(console, "local-2")

        # Three missed heartbeats of 5 s.
        await wait_until(offline, 40, "local-2 to be offline", [console.process])
        status, started = await console.api.post(
            "/api/executions",
            {
                "name": f"Patch laptops {tag()}",
                "task_type": "command",
                "task_payload": {"command_payload": {"command": "echo patched"}},
                "device_ids": DEVICES,
                "delivery": {"offline_wait_seconds": 3600},
            },
        )
        assert status == 202, started
        await page.goto(f"{console.base_url}/#/executions/{started['execution_id']}")
        local_1 = page.locator('.device-result[data-device="local-1"]')
        local_2 = page.locator('.device-result[data-device="local-2"]')
        await expect(local_1).to_have_attribute("data-status", "success")
        await expect(local_2).to_have_attribute("data-status", "waiting")
        await expect(page.locator(".delivery-words")).to_contain_text(
            "wait up to 1 h for offline devices"
        )
        await expect(page.locator(".detail-title .badge").first).to_have_text("running")
        await snap(page, "run-view-waiting")
    finally:
        os.kill(pid, signal.SIGCONT)  # the laptop opens: its next heartbeat brings the job

    await expect(local_2).to_have_attribute("data-status", "success")
    await expect(local_2).to_contain_text("patched")
    await expect(page.locator(".detail-title .badge").first).to_have_text("success")
    status, run = await console.api.get(f"/api/executions/{started['execution_id']}")
    assert run["result"]["execution_details"]["local-2"]["stdout"] == "patched\n", run
    await wait_until(
        lambda: device_online(console, "local-2"), 20, "local-2 online", [console.process]
    )
