"""Presence lag: how long after an agent is killed (SIGKILL) the console's live feed hears that
its device is offline.

    .venv/bin/python -m bench.presence_lag [--trials 8] [--checkout DIR]

Runs `deployx up --agents 0` (embedded PostgreSQL and NATS, every service) from the checkout
given (default: this one), and for each trial starts a real `deployx agent` (5 s heartbeats, a
new device id), waits until its DeviceRegistered is on NATS, waits a random 0 to 5 s (so that
the kill falls anywhere between two heartbeats), kills it, and times the kill to the
DeviceWentOffline that the API's live feed relays to browsers (deployx.events.devices.*).
The device counts as silent after three missed heartbeats (15 s since the last one), so a
perfect registry answers in 10 to 15 s after the kill; what it adds past that is the lag.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import nats
import nats.aio.msg

from bench.create_tasks import percentile


def _deployx(_checkout: Path) -> list[str]:
    """This interpreter running the CLI; the checkout's code comes first on PYTHONPATH."""
    return [sys.executable, "-c", "from services.cli.main import main; main()"]


def _env(checkout: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("DEPLOYX_")}
    return env | {"PYTHONPATH": str(checkout), "DEPLOYX_LOG_FORMAT": "json"}


async def _wait_for(path: Path, deadline: float) -> None:
    while not await asyncio.to_thread(path.exists):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        await asyncio.sleep(0.2)


async def _start(
    argv: list[str], checkout: Path, env: dict[str, str]
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv,
        cwd=checkout,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )


async def run(trials: int, checkout: Path) -> list[float]:
    base = Path(tempfile.mkdtemp(prefix="deployx-presence-"))
    os.chmod(base, 0o755)
    data = base / "data"
    port = 20000 + random.randrange(20000)
    up = await _start(
        [*_deployx(checkout), "up", "--agents", "0", "--data-dir", str(data), "--port", str(port)],
        checkout,
        _env(checkout),
    )
    lags: list[float] = []
    try:
        await _wait_for(data / "deployx.env", time.monotonic() + 120)
        await asyncio.sleep(5)  # the services subscribe
        text = await asyncio.to_thread((data / "deployx.env").read_text)
        settings = dict(line.split("=", 1) for line in text.splitlines())
        nc = await nats.connect(settings["DEPLOYX_NATS_URL"])
        heard: dict[tuple[str, str], float] = {}
        news = asyncio.Event()

        async def on_event(msg: nats.aio.msg.Msg) -> None:
            envelope = json.loads(msg.data)
            heard[(envelope["type"], envelope["data"]["device_id"])] = time.monotonic()
            news.set()

        async def until_heard(key: tuple[str, str], limit: float) -> float:
            async with asyncio.timeout(limit):
                while key not in heard:
                    news.clear()
                    await news.wait()
            return heard[key]

        await nc.subscribe("deployx.events.devices.*", cb=on_event)
        for trial in range(trials):
            device = f"lag-{trial}-{random.randrange(10**6)}"
            env = _env(checkout) | {"DEPLOYX_NATS_URL": settings["DEPLOYX_NATS_URL"]}
            state = str(base / device)
            agent = await _start(
                [*_deployx(checkout), "agent", "--device-id", device, "--state-dir", state],
                checkout,
                env,
            )
            await until_heard(("DeviceRegistered", device), 60)
            await asyncio.sleep(5 + random.uniform(0, 5))  # the kill lands anywhere in a beat
            killed = time.monotonic()
            agent.send_signal(signal.SIGKILL)
            await agent.wait()
            lags.append(await until_heard(("DeviceWentOffline", device), 60) - killed)
            print(f"trial {trial}: offline on the feed {lags[-1]:.2f} s after the kill", flush=True)
        await nc.close()
    finally:
        up.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(60):
                await up.wait()
        except TimeoutError:
            up.kill()
        shutil.rmtree(base, ignore_errors=True)
    return lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--checkout", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    lags = asyncio.run(run(args.trials, args.checkout))
    print(
        f"kill to offline on the feed, {len(lags)} trials: min {min(lags):.2f} s, "
        f"p50 {percentile(lags, 0.5):.2f} s, max {max(lags):.2f} s"
    )


if __name__ == "__main__":
    main()
