"""Every service answers /healthz and /readyz on DEPLOYX_HEALTH_PORT, for Kubernetes probes."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from services.infra.embedded import free_port
from tests.e2e.processes import Services, wait_until


@pytest.mark.parametrize("command", [["ticker"], ["executor", "--type", "command"]])
async def test_a_background_service_answers_its_probes(
    database_url: str, nats_url: str, tmp_path: Path, command: list[str]
) -> None:
    services = Services(tmp_path, database_url, nats_url)
    port = free_port()
    services.env["DEPLOYX_HEALTH_PORT"] = str(port)
    service = services.start(command[0], command)
    answers: dict[str, tuple[int, dict[str, object]]] = {}

    async def probed() -> bool:
        try:
            async with aiohttp.ClientSession() as session:
                for path in ("/healthz", "/readyz"):
                    async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                        answers[path] = (response.status, await response.json())
        except aiohttp.ClientConnectionError:
            return False
        return True

    try:
        await wait_until(probed, 20, f"{command[0]} to answer its probes", [service])
    finally:
        services.stop_all()

    assert answers["/healthz"] == (200, {"status": "ok"})
    assert answers["/readyz"] == (
        200,
        {"status": "ready", "checks": {"database": "ok", "nats": "ok", "consumers": "ok"}},
    )
