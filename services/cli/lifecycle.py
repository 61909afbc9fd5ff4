"""Running services in this process until SIGINT or SIGTERM; light enough for the agent."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import structlog

from services.infra.settings import Settings

log = structlog.get_logger("deployx")
Service = Callable[[Settings, asyncio.Event], Awaitable[None]]


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run_services(settings: Settings, services: list[Service], stop: asyncio.Event) -> None:
    """Runs services together; when one fails, the others are stopped and the error raised."""
    tasks = [asyncio.ensure_future(service(settings, stop)) for service in services]
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def run_until_signal(settings: Settings, services: list[Service]) -> None:
    """Runs services in this process until SIGINT or SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        await run_services(settings, services, stop)
        log.info("stopped")

    asyncio.run(main())
