"""Connecting to PostgreSQL, what its failures mean, and applying the schema."""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.infra.clock import Backoff
from services.infra.package_files import package_file
from services.infra.settings import Settings

# Anything queries can run on: a pool, a connection, or a connection borrowed from a pool.
# (projections/base.py spells the same alias, since projections import nothing of services.)
Db = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy

SCHEMA_PATH = package_file("services.infra", "schema.sql")
# Seconds a new connection may take: an unreachable host fails in this time, not in a minute.
CONNECT_TIMEOUT = 10.0
# Seconds a statement of a pooled connection may take: a server that hangs (or a network that
# drops packets without a reset) fails the caller with TimeoutError instead of holding it.
COMMAND_TIMEOUT = 30.0
# What a stopped, restarting or unreachable server raises (refused or reset connections,
# "the database system is shutting down / starting up", a connection closed under us): such
# a failure is retried later, and the API answers 503 for it, never 500.
UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,  # TimeoutError included
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # A query sent between the server's "terminating connection" and the socket's close.
    asyncpg.InternalClientError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    # A server that takes no writes: a standby, or a primary demoted or not yet promoted in a
    # failover. Retried like an outage until a writable server answers.
    asyncpg.ReadOnlySQLTransactionError,
)

# The above, and any error the server answers with: for loops that must outlive both.
DATABASE_ERRORS: tuple[type[Exception], ...] = (*UNAVAILABLE, asyncpg.PostgresError)


def reconnect_backoff() -> Backoff:
    """Pauses between tries while the database is away: a try costs little (a refused
    connection), and work resumes within two seconds of the database's return."""
    return Backoff(first=0.25, limit=2.0)


def describe(exc: BaseException) -> str:
    """An error for a log line: its type and message (some, like TimeoutError, have none)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def create_pool(
    database_url: str,
    max_size: int = 20,
    *,
    statement_cache_size: int = 100,
    reset_session: bool = True,
) -> asyncpg.Pool:
    """statement_cache_size 0: no named prepared statements, which PgBouncer in transaction
    mode cannot keep (each transaction may get another server connection).

    reset_session False: a connection goes back to the pool without asyncpg's reset query
    (advisory unlock, CLOSE ALL, UNLISTEN *, RESET ALL: one more round trip per checkout), for
    a pool whose users leave no session state behind. A transaction left open is still rolled
    back (asyncpg does that before any custom reset)."""
    pool = await asyncpg.create_pool(
        database_url,
        min_size=1,
        max_size=max_size,
        timeout=CONNECT_TIMEOUT,
        command_timeout=COMMAND_TIMEOUT,
        statement_cache_size=statement_cache_size,
        reset=None if reset_session else _keep_session,
    )
    assert pool is not None
    return pool


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """A pool's reset that sends nothing (see create_pool's reset_session)."""


async def open_pool(
    settings: Settings, max_size: int, *, session: bool = False, reset_session: bool = True
) -> asyncpg.Pool:
    """A service's pool, on DEPLOYX_DATABASE_URL (session: on the session URL, for the relay's
    leader lock), with the statement cache the settings say; reset_session as in create_pool."""
    url = settings.session_url if session else settings.database_url
    return await create_pool(
        url,
        max_size,
        statement_cache_size=settings.db_statement_cache_size,
        reset_session=reset_session,
    )


async def migrate(database_url: str, lock_timeout: float = 5.0) -> list[str]:
    """Applies what is pending of schema.sql and migrations/ (services/infra/migrations.py);
    nothing, and no lock on any table, when the database is up to date. The steps it ran."""
    from services.infra.migrations import migrate as run_migrations

    return await run_migrations(database_url, lock_timeout=lock_timeout)


async def ensure_database(database_url: str) -> None:
    """Creates the database named in the URL if the server does not have it yet."""
    try:
        conn = await asyncpg.connect(database_url)
    except asyncpg.InvalidCatalogNameError:
        name = database_url.rsplit("/", 1)[1].split("?")[0]
        admin = await asyncpg.connect(database_url.rsplit("/", 1)[0] + "/postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            pass
        finally:
            await admin.close()
    else:
        await conn.close()
