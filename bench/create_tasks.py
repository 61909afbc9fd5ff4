"""Task creation throughput: POST /api/schedule/tasks from this process to a `deployx up`.

    .venv/bin/python -m bench.create_tasks [--requests 5000] [--concurrency 32] [--rounds 3]

Starts `deployx up` (embedded PostgreSQL and NATS) in a temporary data directory as a second
process, waits for it, sends the requests over loopback, and prints requests/s and latency
percentiles. Every request waits for read-your-writes, as a user's would.

In the same run it loads the peer, bench/bare_insert.py (a bare aiohttp handler doing one
INSERT per request into the same PostgreSQL, as a third process), the same way, and prints its
figures and the ratio: what the full write path keeps of what the machine can do.
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


def start_bare(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(
        line.split("=", 1)
        for line in (data_dir / "deployx.env").read_text().splitlines()
        if "=" in line
    )
    command = [sys.executable, "-m", "bench.bare_insert", "--port", str(port)]
    return subprocess.Popen(
        [*command, "--database-url", env["DEPLOYX_DATABASE_URL"]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_listening(base: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{base}/") as response:
                    await response.read()
                    return
            except aiohttp.ClientError:
                await asyncio.sleep(0.2)
    raise TimeoutError(f"{base} did not start")


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


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of these processes so far (Linux /proc; 0 for one gone)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """The processes under pid (the embedded PostgreSQL with its backends, and NATS)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], list(children.get(pid, []))
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(children.get(child, []))
    return found


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    # The two are loaded in turn, this many times each: a machine whose other load drifts
    # (shared cores) weighs on both alike.
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port, bare_port = free_port(), free_port()
    runs: dict[str, tuple[float, list[float]]] = {"deployx": (0.0, []), "bare INSERT": (0.0, [])}
    # CPU seconds spent while each was loaded: in its own process, and in the servers under
    # `deployx up` (PostgreSQL, which both use, and NATS). On a shared machine this stays
    # meaningful when requests/s do not.
    cpu: dict[str, list[float]] = {name: [0.0, 0.0] for name in runs}
    ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="deployx-bench-") as tmp:
        data_dir = Path(tmp)
        stack = start_stack(data_dir, port)
        bare: subprocess.Popen[bytes] | None = None
        try:
            base = f"http://127.0.0.1:{port}"
            token = await wait_ready(base, data_dir / "admin-token")
            bare = start_bare(data_dir, bare_port)
            bare_base = f"http://127.0.0.1:{bare_port}"
            await wait_listening(bare_base)
            await load(base, token, 200, args.concurrency)  # warm-up
            await load(bare_base, "", 200, args.concurrency)
            for _ in range(args.rounds):
                rate: dict[str, float] = {}
                for name, url, key, server in (
                    ("deployx", base, token, stack.pid),
                    ("bare INSERT", bare_base, "", bare.pid),
                ):
                    servers = descendants(stack.pid)
                    own, under = cpu_seconds([server]), cpu_seconds(servers)
                    started = time.perf_counter()
                    latencies = await load(url, key, args.requests, args.concurrency)
                    elapsed = time.perf_counter() - started
                    cpu[name][0] += cpu_seconds([server]) - own
                    cpu[name][1] += cpu_seconds(servers) - under
                    rate[name] = args.requests / elapsed
                    runs[name] = (runs[name][0] + elapsed, runs[name][1] + latencies)
                ratios.append(rate["deployx"] / rate["bare INSERT"])
        finally:
            if bare is not None:
                bare.send_signal(signal.SIGINT)
                bare.wait(30)
            stack.send_signal(signal.SIGINT)
            stack.wait(60)
    ms = 1000.0
    rates = {}
    for name, (elapsed, latencies) in runs.items():
        rates[name] = len(latencies) / elapsed
        print(
            f"POST /api/schedule/tasks ({name}): {len(latencies)} requests, concurrency "
            f"{args.concurrency}: {rates[name]:,.0f} requests/s; latency ms p50 "
            f"{statistics.median(latencies) * ms:.1f}, p99 "
            f"{percentile(latencies, 0.99) * ms:.1f}, max {max(latencies) * ms:.1f}; CPU ms "
            f"per request: {cpu[name][0] / len(latencies) * ms:.2f} in its process, "
            f"{cpu[name][1] / len(latencies) * ms:.2f} in PostgreSQL and NATS"
        )
    print(
        f"deployx reaches {rates['deployx'] / rates['bare INSERT']:.0%} of the bare handler "
        f"(rounds: {', '.join(f'{ratio:.0%}' for ratio in ratios)})"
    )


if __name__ == "__main__":
    asyncio.run(main())
