"""A three-node NATS JetStream cluster on loopback ports: for the end-to-end tests that lose and
restart nodes, and for the benchmarks' --cluster runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nats
import nats.errors
from nats.js.errors import Error as JetStreamError

from services.infra.embedded import free_port, log_tail
from services.infra.embedded_nats import EmbeddedNats

CLUSTER_NAME = "deployx"


class NatsCluster:
    """`size` nats-servers with JetStream, routed to each other on 127.0.0.1.

    Every node keeps its client port, cluster port, name and store directory for good, so a
    node killed (or the whole cluster stopped) comes back as the same JetStream peer.
    """

    def __init__(self, base_dir: Path, size: int = 3) -> None:
        cluster_ports = [free_port() for _ in range(size)]
        routes = ",".join(f"nats://127.0.0.1:{port}" for port in cluster_ports)
        self.nodes = [
            EmbeddedNats(
                base_dir / f"nats-{index}",
                server_name=f"nats-{index}",
                extra_args=[
                    "--cluster",
                    f"nats://127.0.0.1:{cluster_port}",
                    "--routes",
                    routes,
                    "--cluster_name",
                    CLUSTER_NAME,
                ],
            )
            for index, cluster_port in enumerate(cluster_ports, start=1)
        ]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated, as DEPLOYX_NATS_URL takes them."""
        return ",".join(node.url for node in self.nodes)

    @property
    def pids(self) -> list[int]:
        """The process ids of the running nodes."""
        return [node.pid for node in self.nodes if node.pid is not None]

    @property
    def running(self) -> list[EmbeddedNats]:
        return [node for node in self.nodes if node.running]

    def node(self, server_name: str) -> EmbeddedNats:
        return next(node for node in self.nodes if node.server_name == server_name)

    async def start(self, timeout: float = 30.0) -> None:
        """Starts every node that is not running; returns once JetStream answers on each."""
        # Together: a node's JetStream waits for the others before it elects a meta leader.
        waiting = [node for node in self.nodes if not node.running]
        await asyncio.gather(*(asyncio.to_thread(node.start, timeout) for node in waiting))
        await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float = 30.0) -> float:
        """Until every running node answers a JetStream request (so the cluster has formed and
        has a meta leader); returns how long that took."""
        started = time.monotonic()
        deadline = started + timeout
        for node in self.running:
            while not await _jetstream_answers(node.url):
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"JetStream of {node.server_name} did not answer in {timeout} s; "
                        f"end of {node.log_path}:\n{log_tail(node.log_path)}"
                    )
                await asyncio.sleep(0.1)
        return time.monotonic() - started

    async def stream_leader(self, stream: str, timeout: float = 10.0) -> EmbeddedNats:
        """The node that leads `stream`'s replicas now."""
        deadline = time.monotonic() + timeout
        while True:
            leader = await self._stream_leader_name(stream)
            if leader is not None:
                return self.node(leader)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{stream} has no leader after {timeout} s")
            await asyncio.sleep(0.1)

    async def _stream_leader_name(self, stream: str) -> str | None:
        for node in self.running:
            nc = await nats.connect(node.url, allow_reconnect=False, connect_timeout=2)
            try:
                # Briefly: a node that knows of no leader does not answer at all.
                info = await nc.jetstream(timeout=1.0).stream_info(stream)
            except (JetStreamError, nats.errors.Error, TimeoutError):
                continue
            finally:
                await nc.close()
            if info.cluster is not None and info.cluster.leader:
                return info.cluster.leader
        return None

    def stop(self) -> None:
        """Stops every node cleanly (SIGTERM), as an operator restarting the cluster would."""
        for node in self.nodes:
            node.stop()

    def kill(self, node: EmbeddedNats) -> None:
        """SIGKILL one node, as a machine crash would."""
        node.kill()

    def logs(self, lines: int = 20) -> str:
        return "\n".join(
            f"--- {node.server_name} ---\n{log_tail(node.log_path, lines)}" for node in self.nodes
        )


async def _jetstream_answers(url: str) -> bool:
    try:
        nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
    except (OSError, nats.errors.Error, TimeoutError):
        return False
    try:
        await nc.jetstream(timeout=1.0).account_info()
    except (JetStreamError, nats.errors.Error, TimeoutError):
        return False
    finally:
        await nc.close()
    return True


@contextmanager
def nats_cluster(base_dir: Path, size: int = 3) -> Iterator[NatsCluster]:
    """A cluster whose nodes are stopped at the end, whatever happened (start it yourself)."""
    cluster = NatsCluster(base_dir, size)
    try:
        yield cluster
    finally:
        cluster.stop()
