"""Every service's /metrics on its health port, as Prometheus scrapes it: each exports its own
series, and their values say what happened (a task fired once, its one result recorded, every
reader of the log caught up)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from projections import PROJECTIONS
from services.infra.embedded import free_port
from tests.e2e.fleet import command_task
from tests.e2e.processes import ServiceProcess, Services, wait_until
from tests.stack import Stack

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
SERVICES = {
    "api": ["api", "--port", "{port}"],
    "relay": ["relay"],
    "projector": ["projector"],
    "ticker": ["ticker"],
    "executor": ["executor", "--type", "command"],
}


async def scrape(port: int) -> tuple[set[str], Samples] | None:
    """The metric families and samples on a health port; None while it does not answer."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            assert response.status == 200
            assert response.content_type == "text/plain"
            text = await response.text()
    except aiohttp.ClientConnectionError:
        return None
    families = list(text_string_to_metric_families(text))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
    }
    return {f.name for f in families}, samples


async def test_each_service_exports_its_series_on_its_health_port(
    stack: Stack, services: Services, tmp_path: Path
) -> None:
    ports: dict[str, int] = {}
    running: dict[str, ServiceProcess] = {}
    for name, command in SERVICES.items():
        ports[name] = free_port()
        services.env["DEPLOYX_HEALTH_PORT"] = str(ports[name])
        running[name] = services.start(name, [a.format(port=free_port()) for a in command])
    del services.env["DEPLOYX_HEALTH_PORT"]
    services.start("agent", ["agent", "--device-id", "dev-m", "--state-dir", str(tmp_path / "a")])
    api = await stack.client("ops", "admin")

    async def online() -> bool:
        _, devices = await api.get("/api/devices")
        return any(d["id"] == "dev-m" and d["online"] for d in devices["items"])

    await wait_until(online, 30, "dev-m online", list(running.values()))

    # A task the ticker fires (not a run-now), a moment from now.
    due = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    body = command_task("echo measured", ["dev-m"]) | {
        "recurrence_type": "once",
        "recurrence_config": {"run_at": due},
    }
    status, task = await api.post("/api/schedule/tasks", body)
    assert status == 201, task

    async def succeeded() -> bool:
        _, page = await api.get(f"/api/schedule/tasks/{task['id']}/executions")
        return any(item["status"] == "success" for item in page["items"])

    await wait_until(succeeded, 30, "the task to run", list(running.values()))

    scraped: dict[str, tuple[set[str], Samples]] = {}

    async def settled() -> bool:
        for name, port in ports.items():
            found = await scrape(port)
            if found is None:
                return False
            scraped[name] = found
        relay, projector = scraped["relay"][1], scraped["projector"][1]
        executor = scraped["executor"][1]
        return (
            relay.get(("deployx_relay_lag_events", ())) == 0
            and all(
                projector.get(("deployx_projection_lag_events", (("projection", p.name),))) == 0
                for p in PROJECTIONS
            )
            and executor.get(("deployx_executor_runs_in_flight", (("task_type", "command"),))) == 0
        )

    await wait_until(settled, 30, "every reader of the log to catch up", list(running.values()))

    def value(service: str, name: str, **labels: Any) -> float | None:
        return scraped[service][1].get((name, tuple(sorted(labels.items()))))

    # Caught up: nothing behind, and no age of anything behind.
    assert value("relay", "deployx_relay_lag_seconds") == 0
    for projection in PROJECTIONS:
        assert value("projector", "deployx_projection_lag_seconds", projection=projection.name) == 0
    # One task came due once, with no other ticker to race.
    assert value("ticker", "deployx_ticker_fired_total") == 1
    assert value("ticker", "deployx_ticker_lost_races_total") == 0
    # Its one device's result, a success.
    results = "deployx_executor_results_total"
    assert value("executor", results, task_type="command", status="success") == 1
    assert not any(
        name == results and dict(labels)["status"] != "success"
        for name, labels in scraped["executor"][1]
    )
    # The API keeps the registry and answers for the dead letters (none open: no samples).
    assert value("api", "deployx_devices_online") == 1
    assert "deployx_dead_letters_open" in scraped["api"][0]
    assert ("deployx_dead_letters_open", ()) not in scraped["api"][1]
    # Each exports only its own: replicas of other services do not repeat the series.
    assert "deployx_relay_lag_events" not in scraped["projector"][0] | scraped["api"][0]
    assert "deployx_projection_lag_events" not in scraped["relay"][0] | scraped["ticker"][0]
