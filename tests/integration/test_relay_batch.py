"""The relay's batch step on a real PostgreSQL and nats-server: which error it reports."""

from __future__ import annotations

import nats
import nats.js.errors
import pytest

from services.engine.batch_publish import BatchPublisher
from services.engine.relay import ACK_STALL, BATCH, _relay_batch
from services.infra.db import create_pool
from services.infra.store import LogCursor, StreamAppend, append_many, new_event_id, read_after
from tests.integration.test_event_log import paused


async def test_a_failed_publish_is_reported_not_the_read_ahead_that_failed_with_it(
    database_url: str, nats_url: str
) -> None:
    """A full batch is published while the next one is read on the same connection. The
    publish fails (no stream takes the subjects) and the read fails too (the database ended
    the session): the relay must report the publish's error, not hide it behind the read's."""
    pool = await create_pool(database_url, max_size=2)
    streams = [f"s-{n}" for n in range(BATCH)]
    await append_many(
        pool, [StreamAppend(s, "test", 0, paused(s), new_event_id()) for s in streams]
    )
    client = await nats.connect(nats_url)
    try:
        async with pool.acquire() as conn:
            batch = await read_after(conn, LogCursor(), BATCH)
            assert len(batch) == BATCH
            await pool.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
            async with BatchPublisher(client, ACK_STALL) as publisher:
                with pytest.raises(nats.js.errors.NoStreamResponseError):
                    await _relay_batch(conn, client.jetstream(), publisher, batch)
    finally:
        await client.close()
        await pool.close()
