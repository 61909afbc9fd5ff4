"""File server under a flood: how fast one device downloads a file while another device sends
file requests as fast as it can, with the requests on a connection of their own or not.

    .venv/bin/python -m bench.file_requests [--megabytes 16] [--flooders 4]

Starts an embedded PostgreSQL and nats-server, stores a file in the object store, records a
run granting it to device `honest` and one granting it to device `flood`, and runs the file
server in this process (requests on a connection of their own, as an executor does). For each
setting it downloads the file as the agent does (FileFetcher, chunk after chunk, in a process of
its own) once alone and once while `--flooders` other processes, each with device `flood`'s
inbox, ask for its first chunk over and over without waiting for answers; it reports the honest
download's time and rate, how many requests a second the flood got into nats-server and how
many of them the file server's connection took (nats-server's monitoring, /connz), and the
most that waited at nats-server for that connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import asyncpg
import msgspec
import nats

from services.agent.file_fetch import FileFetcher
from services.agent.file_protocol import ChunkRequest, files_subject
from services.executor.file_server import FileServer
from services.infra.db import ensure_database, migrate
from services.infra.embedded import free_port
from services.infra.embedded_nats import EmbeddedNats
from services.infra.embedded_postgres import EmbeddedPostgres
from services.infra.nats_auth import agent_inbox_prefix
from services.infra.rate_limit import TokenBuckets
from services.infra.rejections import Rejections
from tests.integration.file_jobs import file_job

BUCKET = "bench-files"
TIMEOUT = 30.0  # seconds a download may take before it counts as starved
SELF = [sys.executable, "-m", "bench.file_requests"]


async def download(url: str, job_id: str, file_id: str) -> float:
    """Seconds device `honest`'s agent takes to fetch the whole file, in a process of its own
    as on a device (inf: not within TIMEOUT)."""
    child = await asyncio.create_subprocess_exec(
        *SELF, "--download", url, job_id, file_id, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await child.communicate()
    return float(out.decode().strip() or "inf")


def download_once(url: str, job_id: str, file_id: str) -> None:
    """Prints the seconds the download took (run in a child process)."""

    async def fetch() -> float:
        nc = await nats.connect(url, inbox_prefix=agent_inbox_prefix("honest"))
        began = time.monotonic()

        async def discard(_: bytes) -> None:
            return None

        try:
            await asyncio.wait_for(
                FileFetcher(nc, "honest", job_id).download(file_id, discard), TIMEOUT
            )
        except TimeoutError:
            return math.inf
        finally:
            await nc.close()
        return time.monotonic() - began

    print(asyncio.run(fetch()))


def flood_forever(url: str, job_id: str, file_id: str) -> None:
    """A flooding device: its first chunk, asked for without end (run in a child process)."""

    async def flood() -> None:
        nc = await nats.connect(url, inbox_prefix=agent_inbox_prefix("flood"), name="flood")
        inbox = nc.new_inbox()
        await nc.subscribe(inbox, cb=_ignore)
        request = msgspec.json.encode(ChunkRequest(job_id=job_id, file_id=file_id))
        print("flooding", flush=True)
        while True:  # nats-py writes whenever its buffer fills: as fast as this client goes
            await nc.publish(files_subject("flood"), request, reply=inbox)

    asyncio.run(flood())


async def _ignore(_: nats.aio.msg.Msg) -> None:
    return None


def connections(monitor: int) -> dict[str, dict[str, int]]:
    """nats-server's /connz: each named connection's messages in and out, and bytes waiting."""
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/connz?limit=1000", timeout=5) as r:
        found: dict[str, dict[str, int]] = {}
        for c in json.load(r)["connections"]:
            totals = found.setdefault(c.get("name", ""), Counter())
            totals.update(in_msgs=c["in_msgs"], out_msgs=c["out_msgs"])
            totals["pending"] = max(totals["pending"], c["pending_bytes"])
        return found


async def watch_pending(monitor: int, most: Counter[str], stop: asyncio.Event) -> None:
    """The most bytes nats-server held for the file server's connection, every 0.2 s."""
    while not stop.is_set():
        now = await asyncio.to_thread(connections, monitor)
        most["pending"] = max(most["pending"], now.get("intake", {}).get("pending", 0))
        await asyncio.sleep(0.2)


async def measure(args: argparse.Namespace, base: Path) -> None:
    postgres = EmbeddedPostgres(base / "pg", fsync=False)
    monitor = free_port()
    broker = EmbeddedNats(base / "nats", extra_args=["-m", str(monitor)])
    url = with_db = ""
    try:
        dsn = await asyncio.to_thread(postgres.start)
        url = await asyncio.to_thread(broker.start)
        with_db = f"{dsn.rsplit('/', 1)[0]}/deployx"
        await ensure_database(with_db)
        await migrate(with_db)
        pool = await asyncpg.create_pool(with_db, max_size=10)
        setup = await nats.connect(url)
        store = await setup.jetstream().create_object_store(BUCKET)
        await store.put("big", os.urandom(args.megabytes * 1024 * 1024))
        await setup.close()
        honest_run = await file_job(pool, ["honest"], "big")
        flood_run = await file_job(pool, ["flood"], "big")
        limit = f"{args.rate:g}/s, burst {args.burst}"
        for name, own in ((f"{limit}, own connection", True), (f"{limit}, shared", False)):
            await flooded_download(args, url, monitor, pool, name, own, honest_run, flood_run)
        await pool.close()
    finally:
        await asyncio.to_thread(broker.stop)
        await asyncio.to_thread(postgres.stop)


async def flooded_download(
    args: argparse.Namespace,
    url: str,
    monitor: int,
    pool: asyncpg.Pool,
    name: str,
    own: bool,
    honest_run: str,
    flood_run: str,
) -> None:
    """One setting: requests on a connection of their own (own), or on the one the file
    server's JetStream reads use. Fresh connections: a flood may have had one closed."""
    dropped = Counter[str]()

    async def on_error(error: Exception) -> None:
        dropped[type(error).__name__] += 1  # UnexpectedEOF: nats-server closed it

    intake = await nats.connect(url, error_cb=on_error, name="intake")
    services = await nats.connect(url, error_cb=on_error) if own else intake
    limits = TokenBuckets(args.rate, args.burst)
    server = FileServer(pool, services, Rejections(), BUCKET, limits=limits, intake=intake)
    await server.start()
    alone = await download(url, f"{honest_run}:honest", "big")
    flood = [*SELF, "--flood", url, f"{flood_run}:flood", "big"]
    flooders = [
        await asyncio.create_subprocess_exec(*flood, stdout=asyncio.subprocess.PIPE)
        for _ in range(args.flooders)
    ]
    most, stop = Counter[str](), asyncio.Event()
    watching = asyncio.create_task(watch_pending(monitor, most, stop))
    try:
        for process in flooders:  # each says when it is connected
            assert process.stdout is not None
            await process.stdout.readline()
        await asyncio.sleep(2)  # the flood in full swing
        before, began = await asyncio.to_thread(connections, monitor), time.monotonic()
        flooded = await download(url, f"{honest_run}:honest", "big")
        after, took = await asyncio.to_thread(connections, monitor), time.monotonic() - began
    finally:
        stop.set()
        for process in flooders:
            process.kill()
            await process.wait()
        await watching
    await server.stop()
    await intake.close()
    await services.close()
    sent = (after["flood"]["in_msgs"] - before["flood"]["in_msgs"]) / took
    taken = (after["intake"]["out_msgs"] - before["intake"]["out_msgs"]) / took
    size = args.megabytes
    print(
        f"{name}: alone {alone:.2f} s ({size / alone:.1f} MiB/s); with {args.flooders} "
        f"flooding processes {flooded:.2f} s ({size / flooded:.1f} MiB/s); the flood sent "
        f"{sent:,.0f} requests/s, nats-server sent the file server's connection {taken:,.0f}/s "
        f"and held up to {most['pending'] / 2**20:.1f} MiB for it; its client reported "
        f"{dict(dropped)}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=16)
    parser.add_argument("--flooders", type=int, default=4)
    parser.add_argument("--rate", type=float, default=250.0)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--flood", nargs=3, metavar=("URL", "JOB_ID", "FILE_ID"))
    parser.add_argument("--download", nargs=3, metavar=("URL", "JOB_ID", "FILE_ID"))
    args = parser.parse_args()
    if args.flood:
        flood_forever(*args.flood)
        return
    if args.download:
        download_once(*args.download)
        return
    base = Path(tempfile.mkdtemp(prefix="deployx-bench-files-"))
    os.chmod(base, 0o755)
    try:
        asyncio.run(measure(args, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
