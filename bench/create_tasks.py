"""Task creation throughput: POST /api/schedule/tasks from this process to a `deployx up`.

    .venv/bin/python -m bench.create_tasks [--requests 5000] [--concurrency 32]

Starts `deployx up` (embedded PostgreSQL and NATS) in a temporary data directory as a second
process, waits for it, sends the requests over loopback, and prints requests/s and latency
percentiles. Every request waits for read-your-writes, as a user's would.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from services.infra.embedded import free_port

TASK = {
    "name": "bench",
    "task_type": "command",
    "recurrence_type": "daily",
    "recurrence_config": {"time": "03:00", "timezone": "Europe/Berlin"},
    "device_ids": ["local-1"],
    "task_payload": {"command_payload": {"command": "true"}},
}


def start_stack(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    deployx = Path(sys.executable).with_name("deployx")
    env = os.environ | {"DEPLOYX_LOG_LEVEL": "warning"}
    command = [str(deployx), "up", "--data-dir", str(data_dir), "--port", str(port)]
    return subprocess.Popen(
        [*command, "--agents", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_ready(base: str, token_file: Path, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{base}/readyz") as response:
                    if response.status == 200:  # the token file is written before the API starts
                        return (await asyncio.to_thread(token_file.read_text)).strip()
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError("deployx up did not become ready")


async def load(base: str, token: str, requests: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    remaining = iter(range(requests))
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

        async def worker() -> None:
            for _ in remaining:
                started = time.perf_counter()
                async with session.post(f"{base}/api/schedule/tasks", json=TASK) as response:
                    await response.read()
                    if response.status != 201:
                        raise RuntimeError(f"status {response.status}")
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="deployx-bench-") as tmp:
        data_dir = Path(tmp)
        stack = start_stack(data_dir, port)
        try:
            base = f"http://127.0.0.1:{port}"
            token = await wait_ready(base, data_dir / "admin-token")
            await load(base, token, 200, args.concurrency)  # warm-up
            started = time.perf_counter()
            latencies = await load(base, token, args.requests, args.concurrency)
            elapsed = time.perf_counter() - started
        finally:
            stack.send_signal(signal.SIGINT)
            stack.wait(60)
    ms = 1000.0
    print(
        f"POST /api/schedule/tasks: {args.requests} requests, concurrency {args.concurrency}: "
        f"{args.requests / elapsed:,.0f} requests/s; latency ms p50 "
        f"{statistics.median(latencies) * ms:.1f}, p99 {percentile(latencies, 0.99) * ms:.1f}, "
        f"max {max(latencies) * ms:.1f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
