"""The peer of bench.create_tasks: a bare aiohttp handler doing one INSERT per request.

    .venv/bin/python -m bench.bare_insert --port PORT --database-url URL

What the machine reaches for a POST that stores its body with one autocommitted INSERT into the
same PostgreSQL: no validation, no event log, no read-your-writes. bench.create_tasks starts it
as its own process, as `deployx up` is, and loads it the same way.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

POOL = web.AppKey("pool", asyncpg.Pool)


async def create(request: web.Request) -> web.Response:
    body = await request.read()
    row_id = uuid.uuid4()
    await request.app[POOL].execute(
        "INSERT INTO bench_bare (id, body) VALUES ($1, $2::jsonb)", row_id, body.decode()
    )
    return web.json_response({"id": str(row_id)}, status=201)


def app(database_url: str, pool_size: int) -> web.Application:
    application = web.Application()
    application.router.add_post("/api/schedule/tasks", create)

    async def database(application: web.Application) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(database_url, min_size=pool_size, max_size=pool_size)
        assert pool is not None
        await pool.execute(
            "CREATE TABLE IF NOT EXISTS bench_bare (id uuid PRIMARY KEY, body jsonb)"
        )
        application[POOL] = pool
        yield
        await pool.close()

    application.cleanup_ctx.append(database)
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--pool-size", type=int, default=20)
    args = parser.parse_args()
    web.run_app(
        app(args.database_url, args.pool_size),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
