"""`deployx api` as a user runs it: HTTPS with --tls-cert/--tls-key, and loopback by default."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from services.infra.auth import create_token
from services.infra.embedded import free_port
from tests.e2e.processes import ServiceProcess, Services, deployx_command


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made here with the openssl command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec"),
            *("-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def listening_url(api: ServiceProcess) -> str:
    return str(next(ln["url"] for ln in api.log_lines() if ln.get("event") == "api_listening"))


async def test_the_api_serves_https_with_the_certificate_it_is_given(
    services: Services, database_url: str, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    api = services.start(
        "api", ["api", "--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key)]
    )
    await api.wait_for_log("api_listening")
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        token = await create_token(pool, "tls-user", "viewer")
    finally:
        await pool.close()
    trusted = ssl.create_default_context(cafile=str(cert))

    async with aiohttp.ClientSession() as session:
        me = f"https://127.0.0.1:{port}/api/me"
        headers = {"Authorization": f"Bearer {token}"}
        async with session.get(me, headers=headers, ssl=trusted) as response:
            assert response.status == 200
            assert await response.json() == {"user": "tls-user", "role": "viewer"}
        # Plain HTTP on the same port gets no answer at all.
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                await response.read()
        # A client that does not trust the certificate refuses it.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with session.get(f"https://127.0.0.1:{port}/healthz") as response:
                await response.read()
    assert listening_url(api) == f"https://127.0.0.1:{port}/"


async def test_the_api_listens_on_loopback_only_unless_told(services: Services) -> None:
    services.env.pop("DEPLOYX_HOST", None)
    port = free_port()
    api = services.start("api", ["api", "--port", str(port)])
    await api.wait_for_log("api_listening")

    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
            assert response.status == 200
        # Bound to 127.0.0.1 itself, not to every address: another address of this host
        # (127.0.0.2 is one on Linux) finds nobody listening.
        with pytest.raises(aiohttp.ClientConnectorError):
            async with session.get(f"http://127.0.0.2:{port}/healthz") as response:
                await response.read()
    assert listening_url(api) == f"http://127.0.0.1:{port}/"


@pytest.mark.parametrize(
    "options",
    [
        ["--tls-cert", "{cert}"],
        ["--tls-key", "{key}"],
        ["--tls-cert", "{key}", "--tls-key", "{key}"],
    ],
    ids=["no key", "no certificate", "a key for a certificate"],
)
def test_a_wrong_tls_option_stops_the_api_before_it_starts(
    tmp_path: Path, options: list[str]
) -> None:
    cert, key = self_signed(tmp_path)
    args = [option.format(cert=cert, key=key) for option in options]

    done = subprocess.run(
        [*deployx_command(), "api", "--port", str(free_port()), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode != 0
    assert done.stderr.startswith("TLS: "), done.stderr
