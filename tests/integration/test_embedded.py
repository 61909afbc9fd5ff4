"""The embedded PostgreSQL and nats-server, and the fixtures built on them, for real."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import asyncpg
import nats
import pytest

from services.infra.embedded import free_port
from services.infra.embedded_nats import EmbeddedNats
from services.infra.embedded_postgres import EmbeddedPostgres


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_postgres_answers(postgres_server: str) -> None:
    conn = await asyncpg.connect(postgres_server)
    try:
        assert await conn.fetchval("select 1") == 1
        assert await conn.fetchval("show max_connections") == "200"
    finally:
        await conn.close()


async def test_postgres_keeps_data_across_stop_start_and_kill(tmp_path: Path) -> None:
    port = free_port()
    server = EmbeddedPostgres(tmp_path / "pg", port)
    with server:
        dsn = await asyncio.to_thread(server.start)  # already running: the same DSN again
        assert dsn == f"postgresql://postgres@127.0.0.1:{port}/postgres"
        conn = await asyncpg.connect(dsn)
        await conn.execute("create table kept (n int); insert into kept values (1)")
        await conn.close()

        await asyncio.to_thread(server.stop)
        assert not server.running and not port_open(port)
        assert await asyncio.to_thread(server.start) == dsn
        conn = await asyncpg.connect(dsn)
        await conn.execute("insert into kept values (2)")
        await conn.close()

        await asyncio.to_thread(server.kill)  # a crash: recovery replays the WAL on start
        assert not server.running and not port_open(port)
        assert await asyncio.to_thread(server.start) == dsn
        conn = await asyncpg.connect(dsn)
        assert await conn.fetchval("select array_agg(n order by n) from kept") == [1, 2]
        await conn.close()
    assert not server.running and not port_open(port)
    assert "database system is ready" in (tmp_path / "pg" / "postgres.log").read_text()


@pytest.mark.parametrize("run", [1, 2])
async def test_database_url_is_fresh_with_the_schema(database_url: str, run: int) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert (await conn.fetchval("select current_database()")).startswith("test_")
        assert await conn.fetchval("select to_regclass('events') is not null")
        # Fails on the second run if both runs were given the same database.
        await conn.execute("create table only_mine (run int)")
        await conn.execute("insert into only_mine values ($1)", run)
        assert await conn.fetchval("select count(*) from events") == 0
    finally:
        await conn.close()


async def test_nats_publish_subscribe(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.subscribe("deployx.test.ping")
        await nc.publish("deployx.test.ping", b"hello")
        msg = await sub.next_msg(timeout=2)
        assert msg.data == b"hello"
    finally:
        await nc.close()


async def test_jetstream_acks_a_publish(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="TEST", subjects=["deployx.test.>"])
        ack = await js.publish("deployx.test.a", b"1", headers={"Nats-Msg-Id": "one"})
        again = await js.publish("deployx.test.a", b"1", headers={"Nats-Msg-Id": "one"})
        assert (ack.stream, ack.seq, again.duplicate) == ("TEST", 1, True)
    finally:
        await nc.close()


async def test_nats_keeps_streams_across_restart(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    with server:
        url = server.url
        nc = await nats.connect(url)
        await nc.jetstream().add_stream(name="KEPT", subjects=["kept"])
        await nc.jetstream().publish("kept", b"x")
        await nc.close()

        await asyncio.to_thread(server.stop)
        assert not port_open(server.port)
        assert await asyncio.to_thread(server.start) == url
        nc = await nats.connect(url)
        info = await nc.jsm().stream_info("KEPT")
        assert info.state.messages == 1
        await nc.close()
    assert not server.running and not port_open(server.port)


async def refused_without_password(dsn: str) -> str:
    """The server's answer to a login as `postgres` with no password (or a wrong one)."""
    for attempt in (without_password(dsn), dsn.replace("postgres:", "postgres:wrong", 1)):
        with pytest.raises(asyncpg.InvalidPasswordError) as refused:
            await asyncpg.connect(attempt)
    return str(refused.value)


def without_password(dsn: str) -> str:
    login, _, rest = dsn.partition("@")
    return f"{login.split(':')[0]}:{login.split(':')[1]}@{rest}"  # postgresql://postgres@...


async def test_postgres_with_a_password_lets_no_login_in_without_it(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", password="s3cret'pass word")
    with server:
        assert "s3cret" in server.dsn and without_password(server.dsn) != server.dsn
        assert "password authentication failed" in await refused_without_password(server.dsn)
        conn = await asyncpg.connect(server.dsn)
        try:
            assert await conn.fetchval("select 1") == 1
            methods = await conn.fetch("select distinct auth_method from pg_hba_file_rules")
            assert [row["auth_method"] for row in methods] == ["scram-sha-256"]
        finally:
            await conn.close()


async def test_a_trusting_data_directory_gets_the_password_when_started_with_one(
    tmp_path: Path,
) -> None:
    """A data directory of an earlier `deployx up` (trust auth) is closed on its next start."""
    port = free_port()
    old = EmbeddedPostgres(tmp_path / "pg", port)
    with old:
        conn = await asyncpg.connect(old.dsn)  # anyone gets in
        await conn.execute("create table kept (n int); insert into kept values (7)")
        await conn.close()

    new = EmbeddedPostgres(tmp_path / "pg", port, password="fresh-password")
    with new:
        assert "password authentication failed" in await refused_without_password(new.dsn)
        conn = await asyncpg.connect(new.dsn)
        try:
            assert await conn.fetchval("select n from kept") == 7
        finally:
            await conn.close()
