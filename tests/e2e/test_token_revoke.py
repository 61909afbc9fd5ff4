"""`deployx token revoke` and `token list` as an operator runs them, against real API
processes: a revoked token stops working on every API within a second."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from services.infra.embedded import free_port
from tests.e2e.processes import ServiceProcess, Services, deployx_command, wait_until

REVOKED_WITHIN = 1.0  # seconds, from the command's exit to a 401 on every API


@dataclass
class Apis:
    """Two `deployx api` processes on one database, and a way to run `deployx` beside them."""

    services: Services
    processes: list[ServiceProcess]
    urls: list[str]
    session: aiohttp.ClientSession

    def deployx(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*deployx_command(), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.services.env,
            timeout=60,
        )

    def create(self, user: str, role: str = "operator") -> str:
        done = self.deployx("token", "create", "--user", user, "--role", role)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    async def statuses(self, token: str) -> list[int]:
        """What GET /api/me answers on each API with this token."""
        found = []
        for url in self.urls:
            headers = {"Authorization": f"Bearer {token}"}
            async with self.session.get(f"{url}/api/me", headers=headers) as response:
                found.append(response.status)
        return found

    async def refused_everywhere(self, token: str) -> float:
        """Seconds until every API answers 401; fails past REVOKED_WITHIN."""

        async def refused() -> bool:
            return await self.statuses(token) == [401] * len(self.urls)

        return await wait_until(refused, REVOKED_WITHIN, "the token to be refused", self.processes)


@pytest.fixture
async def apis(services: Services) -> AsyncIterator[Apis]:
    ports = [free_port(), free_port()]
    processes = [
        services.start(f"api-{n}", ["api", "--port", str(port)]) for n, port in enumerate(ports)
    ]
    for process in processes:
        await process.wait_for_log("api_listening")
    async with aiohttp.ClientSession() as session:
        yield Apis(services, processes, [f"http://127.0.0.1:{port}" for port in ports], session)
    assert services.errors() == [], services.tails()


async def test_a_revoked_token_stops_working_on_every_api_within_a_second(apis: Apis) -> None:
    token, other = apis.create("mallory"), apis.create("alice")
    # Each API has looked the token up, and would remember it.
    assert await apis.statuses(token) == [200, 200]

    done = apis.deployx("token", "revoke", stdin=token + "\n")

    assert (done.returncode, done.stdout) == (0, "revoked 1 token\n"), done.stderr
    await apis.refused_everywhere(token)
    assert await apis.statuses(other) == [200, 200]


async def test_revoking_a_user_revokes_all_of_their_tokens_and_no_one_elses(apis: Apis) -> None:
    first, second, other = (
        apis.create("mallory"),
        apis.create("mallory", "viewer"),
        apis.create("alice"),
    )
    assert await apis.statuses(first) == await apis.statuses(second) == [200, 200]

    done = apis.deployx("token", "revoke", "--user", "mallory")

    assert (done.returncode, done.stdout) == (0, "revoked 2 tokens\n"), done.stderr
    await apis.refused_everywhere(first)
    await apis.refused_everywhere(second)
    assert await apis.statuses(other) == [200, 200]


async def test_tokens_are_listed_without_their_values_and_revoked_by_hash(apis: Apis) -> None:
    token = apis.create("carol", "viewer")
    prefix = hashlib.sha256(token.encode()).hexdigest()[:12]

    listed = apis.deployx("token", "list")

    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split("\t") == ["user", "role", "created", "sha256"]
    carol = [row.split("\t") for row in rows if row.startswith("carol\t")]
    assert [(r[0], r[1], r[3]) for r in carol] == [("carol", "viewer", prefix)]
    assert token not in listed.stdout
    assert await apis.statuses(token) == [200, 200]
    done = apis.deployx("token", "revoke", "--hash", prefix)
    assert (done.returncode, done.stdout) == (0, "revoked 1 token\n"), done.stderr
    await apis.refused_everywhere(token)


@pytest.mark.parametrize(
    ("args", "stdin"),
    [(["--token", "dx_not-a-token"], ""), ([], "dx_not-a-token\n"), (["--user", "nobody"], "")],
    ids=["--token", "stdin", "--user"],
)
async def test_revoking_nothing_says_so_and_fails(apis: Apis, args: list[str], stdin: str) -> None:
    done = apis.deployx("token", "revoke", *args, stdin=stdin)

    assert (done.returncode, done.stdout) == (1, "revoked 0 tokens\n"), done.stderr


async def test_revoke_without_a_token_refuses_to_guess(apis: Apis) -> None:
    done = apis.deployx("token", "revoke", stdin="")

    assert done.returncode != 0
    assert "stdin" in done.stderr, done.stderr


async def test_a_live_stream_opened_with_a_token_ends_when_it_is_revoked(apis: Apis) -> None:
    token, other = apis.create("mallory"), apis.create("alice")
    streams = [
        await apis.session.get(f"{url}/api/live", headers={"Authorization": f"Bearer {t}"})
        for url in apis.urls
        for t in (token, other)
    ]
    try:
        for stream in streams:
            assert stream.status == 200
            assert await stream.content.readline() == b"retry: 2000\n"

        done = apis.deployx("token", "revoke", "--token", token)

        assert done.returncode == 0, done.stderr
        revoked, kept = streams[0::2], streams[1::2]

        async def ended() -> None:
            for stream in revoked:
                while await stream.content.read(4096):
                    pass

        # Both APIs end the revoked token's streams, and only those.
        await asyncio.wait_for(ended(), REVOKED_WITHIN)
        assert not any(stream.content.at_eof() for stream in kept)
    finally:
        for stream in streams:
            stream.close()
