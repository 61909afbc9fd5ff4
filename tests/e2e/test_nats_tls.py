"""NATS over TLS: the real agent (--tls-ca) and a real service (DEPLOYX_NATS_CA) verify the
server's certificate against a CA made in the test; without that CA neither gets through."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import msgspec
import nats
import nats.aio.msg
import pytest
from nats.js.errors import NotFoundError

from services.agent.protocol import Heartbeat, heartbeat_subject
from services.engine.relay import STREAM
from services.infra.embedded_nats import EmbeddedNats
from tests.e2e.processes import Services, wait_until


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A CA certificate and its key (EC P-256, valid a day)."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    openssl(
        *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
        *("-nodes", "-days", "1", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )
    return cert, key


def make_server_cert(directory: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by ca, and its key."""
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    extensions = directory / "server.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        *("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
        *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr)),
    )
    openssl(
        *("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1])),
        *("-CAcreateserial", "-days", "1", "-extfile", str(extensions), "-out", str(cert)),
    )
    return cert, key


class Pki(msgspec.Struct):
    ca: Path
    other_ca: Path  # a CA that signed nothing of this server's


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory, "deployx-test-ca")
    make_server_cert(directory, ca)
    other, _ = make_ca(directory, "someone-else")
    return Pki(ca=ca[0], other_ca=other)


@pytest.fixture(scope="module")
def tls_nats(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[str]:
    """A nats-server that speaks TLS only, with the certificate pki's CA signed."""
    directory = pki.ca.parent
    server = EmbeddedNats(
        tmp_path_factory.mktemp("nats-tls"),
        extra_args=[
            *("--tls", "--tlscert", str(directory / "server.pem")),
            *("--tlskey", str(directory / "server.key")),
        ],
    )
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def agent_args(device_id: str, url: str, state_dir: Path, *extra: str) -> list[str]:
    return ["agent", "--device-id", device_id, "--nats", url, "--state-dir", str(state_dir), *extra]


async def test_the_agent_and_the_services_verify_the_server_with_the_ca(
    tls_nats: str, pki: Pki, database_url: str, tmp_path: Path
) -> None:
    services = Services(tmp_path, database_url, tls_nats)
    trusting = ssl.create_default_context(cafile=str(pki.ca))
    watcher = await nats.connect(tls_nats, tls=trusting, allow_reconnect=False)
    beats: list[Heartbeat] = []

    async def on_beat(msg: nats.aio.msg.Msg) -> None:
        beats.append(msgspec.json.decode(msg.data, type=Heartbeat))

    await watcher.subscribe(heartbeat_subject("tls-a"), cb=on_beat)
    await watcher.subscribe(heartbeat_subject("tls-b"), cb=on_beat)
    await watcher.flush()
    await watcher.flush()  # nats-py 2.16: the first PING may overtake the SUBs
    try:
        # One agent is given the CA with --tls-ca, the other and the relay by DEPLOYX_NATS_CA.
        with_option = agent_args("tls-a", tls_nats, tmp_path / "a", "--tls-ca", str(pki.ca))
        services.start("agent-a", with_option)
        services.env["DEPLOYX_NATS_CA"] = str(pki.ca)
        services.start("agent-b", agent_args("tls-b", tls_nats, tmp_path / "b"))
        relay = services.start("relay", "relay")

        async def heard_both() -> bool:
            return {beat.device_id for beat in beats} == {"tls-a", "tls-b"}

        await wait_until(heard_both, 30, "heartbeats over TLS", services.all)

        async def stream_made() -> bool:
            try:
                await watcher.jetstream().stream_info(STREAM)
            except NotFoundError:
                return False
            return True

        # The relay, a service, reached JetStream over TLS with DEPLOYX_NATS_CA.
        await wait_until(stream_made, 30, "the relay to create its stream", [relay])
    finally:
        services.stop_all()
        await watcher.close()
    assert services.errors() == [], services.tails()


async def test_without_the_right_ca_the_agent_does_not_get_through(
    tls_nats: str, pki: Pki, database_url: str, tmp_path: Path
) -> None:
    services = Services(tmp_path, database_url, tls_nats)
    try:
        for name, extra in (("none", ()), ("other", ("--tls-ca", str(pki.other_ca)))):
            agent = services.start(
                f"agent-{name}", agent_args(f"tls-{name}", tls_nats, tmp_path / name, *extra)
            )
            await agent.wait_for_log("nats_error")
            errors = [line for line in agent.log_lines() if line.get("event") == "nats_error"]
            assert "certificate verify failed" in errors[0]["error"], errors
            assert not agent.logged("agent_ready")
            # Still trying, it stops at once when told to, not after a SIGKILL.
            assert agent.terminate(timeout=10) == 0
    finally:
        services.stop_all()
