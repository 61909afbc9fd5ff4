"""The `deployx` command: the whole system, one service alone, and the operator's tools."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from services.cli.extras import missing_extra_message
from services.cli.ops_commands import add_commands as add_ops_commands
from services.cli.trust_commands import add_commands as add_trust_commands
from services.domain.kinds import TASK_TYPES
from services.infra.logs import configure_logging
from services.infra.settings import SETTING_VARIABLES, Settings, from_env

if TYPE_CHECKING:
    import asyncpg


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        _run(args)
    except ModuleNotFoundError as exc:
        # Each command imports what it needs only when it runs: on a bare (agent) install a
        # server command ends here, saying which extra to install.
        message = missing_extra_message(args.command, exc)
        if message is None:
            raise
        raise SystemExit(message) from None


def _run(args: argparse.Namespace) -> None:
    environ = dict(os.environ)
    if getattr(args, "stack_dir", None) is not None:
        # Tools run beside `deployx up` find its embedded servers without any exports.
        from services.cli.up import read_env_file

        environ = read_env_file(args.stack_dir) | environ
    settings = from_env(
        environ,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        tls_cert=getattr(args, "tls_cert", None),
        tls_key=getattr(args, "tls_key", None),
    )
    configure_logging(settings.log_format, settings.log_level)
    args.run(args, settings)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deployx", description="DeployX Scheduler")
    commands = parser.add_subparsers(required=True, metavar="COMMAND", dest="command")

    up = commands.add_parser("up", help="run the whole system on this machine")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--data-dir", type=Path, default=Path(".deployx"))
    up.add_argument("--agents", type=int, default=3, help="local demo agents to start")
    _tls_options(up)
    up.set_defaults(run=_up)

    api = commands.add_parser("api", help="the HTTP API and web console alone")
    api.add_argument("--host", help="address to listen on (default: DEPLOYX_HOST or 127.0.0.1)")
    api.add_argument("--port", type=int)
    _tls_options(api)
    api.set_defaults(run=_api)

    projector = commands.add_parser("projector", help="keeps the read tables up to date")
    projector.set_defaults(run=_service)

    ticker = commands.add_parser("ticker", help="fires tasks when their occurrences come")
    ticker.set_defaults(run=_service)

    relay = commands.add_parser("relay", help="publishes the event log to NATS JetStream")
    relay.set_defaults(run=_service)

    executor = commands.add_parser("executor", help="runs one task type's executions")
    executor.add_argument("--type", required=True, choices=TASK_TYPES, dest="task_type")
    executor.set_defaults(run=_service)

    agent = commands.add_parser("agent", help="the agent that runs on a managed device")
    agent.add_argument("--device-id", required=True)
    agent.add_argument("--nats", help="NATS URL (default: DEPLOYX_NATS_URL)")
    agent.add_argument("--creds", type=Path, help="NATS credentials: a .creds file or JSON")
    agent.add_argument(
        "--tls-ca", type=Path, help="CA file for the server's TLS certificate (DEPLOYX_NATS_CA)"
    )
    agent.add_argument(
        "--run-as", metavar="USER", help="started as root: run jobs as USER (after reading --creds)"
    )
    agent.add_argument("--state-dir", type=Path, help="where the agent remembers its jobs")
    agent.add_argument(
        "--allow-root",
        type=Path,
        action="append",
        default=[],
        help="a directory file deployments may write under (repeatable; default: anywhere)",
    )
    agent.add_argument("--label", action="append", default=[], help="KEY=VALUE (repeatable)")
    agent.add_argument(
        "--heartbeat-seconds",
        type=float,
        default=5.0,
        help="how often to announce presence (0.5 to 3600; offline after three missed)",
    )
    agent.add_argument(
        "--driver-module", action="append", default=[], help="a module adding package drivers"
    )
    agent.set_defaults(run=_agent)

    auth = commands.add_parser(
        "nats-auth", help="NATS users: one for the services, one per agent (its subjects only)"
    )
    auth.add_argument("--agents", required=True, help="device ids, comma-separated")
    auth.add_argument("--out", type=Path, required=True, help="directory for the files")
    auth.set_defaults(run=_nats_auth)

    migrate = commands.add_parser(
        "migrate", help="apply what is pending of schema.sql and migrations/ (docs/upgrades.md)"
    )
    migrate.add_argument(
        "--contract",
        action="store_true",
        help="also the contract steps: once every service runs this version",
    )
    migrate.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 if migrate would apply something, 2 if it cannot",
    )
    migrate.add_argument(
        "--lock-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="the longest a statement waits for a lock (and so holds up writes) before it is "
        "rolled back and tried again (default 5)",
    )
    _stack_dir_option(migrate)
    migrate.set_defaults(run=_migrate)

    token = commands.add_parser("token", help="API tokens")
    token_commands = token.add_subparsers(required=True, metavar="ACTION")
    create = token_commands.add_parser("create", help="print a new API token")
    create.add_argument("--user", required=True)
    create.add_argument("--role", required=True, choices=("admin", "operator", "viewer"))
    _stack_dir_option(create)
    create.set_defaults(run=_token_create)

    revoke = token_commands.add_parser(
        "revoke", help="revoke a token (read from stdin), --token, all of --user's, or --hash"
    )
    which = revoke.add_mutually_exclusive_group()
    which.add_argument("--token", help="the token itself (default: read from stdin)")
    which.add_argument("--user", help="every token of this user")
    which.add_argument("--hash", dest="sha256_prefix", help="the hash prefix `token list` shows")
    _stack_dir_option(revoke)
    revoke.set_defaults(run=_token_revoke)
    listing = token_commands.add_parser("list", help="every token: user, role, created, hash")
    _stack_dir_option(listing)
    listing.set_defaults(run=_token_list)

    events = commands.add_parser("events", help="the audit log as JSON lines, in log order")
    events.add_argument("--task", help="only this task's events")
    events.add_argument("--after", type=int, help="only events after this position")
    _stack_dir_option(events)
    events.set_defaults(run=_events)

    add_trust_commands(commands, _stack_dir_option)
    add_ops_commands(commands, _stack_dir_option)

    replay = commands.add_parser(
        "replay", help="rebuild the read tables from the log beside the live ones, then swap"
    )
    replay.add_argument(
        "--projection",
        action="append",
        metavar="NAME",
        help="rebuild only this projection (tasks, executions, devices); repeatable",
    )
    _stack_dir_option(replay)
    replay.set_defaults(run=_replay)
    return parser


def _tls_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-cert", help="PEM certificate (chain): serve HTTPS")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")


def _check_tls(settings: Settings) -> None:
    """A wrong certificate or key stops the command before it starts anything."""
    import ssl

    from services.api.server import tls_context

    try:
        tls_context(settings)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise SystemExit(f"TLS: {exc}") from None


def _stack_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        dest="stack_dir",
        type=Path,
        default=Path(".deployx"),
        help="a `deployx up` data directory whose servers to use when DEPLOYX_* are unset",
    )


def _up(args: argparse.Namespace, settings: Settings) -> None:
    from services.cli.up import up

    _check_tls(settings)
    up(settings, args.data_dir, args.agents)


def _api(_args: argparse.Namespace, settings: Settings) -> None:
    from services.cli import runtime

    _check_tls(settings)
    runtime.run_alone(settings, runtime.serve_api)


def _service(args: argparse.Namespace, settings: Settings) -> None:
    """One of the server's background services alone (`deployx projector` ...)."""
    from services.cli import runtime

    alone = {
        "projector": runtime.serve_projector,
        "ticker": runtime.serve_ticker,
        "relay": runtime.serve_relay,
    }
    if args.command == "executor":
        runtime.run_alone(settings, runtime.executor_service(args.task_type))
    else:
        runtime.run_alone(settings, alone[args.command])


def _migrate(args: argparse.Namespace, settings: Settings) -> None:
    from services.cli.migrate import check, migrate

    # The session URL: migrate holds a session-level lock and sets lock_timeout per session.
    if args.check:
        raise SystemExit(asyncio.run(check(settings.session_url, contract=args.contract)))
    asyncio.run(
        migrate(settings.session_url, contract=args.contract, lock_timeout=args.lock_timeout)
    )


def _token_create(args: argparse.Namespace, settings: Settings) -> None:
    import asyncpg

    from services.infra.auth import create_token

    async def run() -> str:
        conn = await asyncpg.connect(settings.database_url)
        try:
            return await create_token(conn, args.user, args.role)
        finally:
            await conn.close()

    print(asyncio.run(run()))


def _token_revoke(args: argparse.Namespace, settings: Settings) -> None:
    from services.infra.auth import revoke_tokens

    token = args.token
    if token is None and args.user is None and args.sha256_prefix is None:
        token = sys.stdin.readline().strip()
        if not token:
            raise SystemExit("give the token on stdin, or --token, --user or --hash")

    async def run() -> int:
        conn = await _connect(settings)
        try:
            return await revoke_tokens(
                conn, token=token, user=args.user, sha256_prefix=args.sha256_prefix
            )
        finally:
            await conn.close()

    try:
        revoked = asyncio.run(run())
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    print(f"revoked {revoked} token{'' if revoked == 1 else 's'}")
    if revoked == 0:
        raise SystemExit(1)


def _token_list(_args: argparse.Namespace, settings: Settings) -> None:
    from services.infra.auth import list_tokens

    async def run() -> list[str]:
        conn = await _connect(settings)
        try:
            tokens = await list_tokens(conn)
        finally:
            await conn.close()
        return [
            f"{t.user}\t{t.role}\t{t.created_at.isoformat(timespec='seconds')}\t{t.sha256_prefix}"
            for t in tokens
        ]

    print("user\trole\tcreated\tsha256", *asyncio.run(run()), sep="\n")


async def _connect(settings: Settings) -> asyncpg.Connection:
    import asyncpg

    return await asyncpg.connect(settings.database_url)


def _events(args: argparse.Namespace, settings: Settings) -> None:
    from services.cli.events import print_events

    asyncio.run(print_events(settings.database_url, args.task, args.after))


def _replay(args: argparse.Namespace, settings: Settings) -> None:
    from services.engine.replay import UnknownProjection, replay_command

    try:
        asyncio.run(replay_command(settings.session_url, args.projection))
    except UnknownProjection as exc:
        raise SystemExit(f"deployx replay: {exc}") from None


def _agent(args: argparse.Namespace, settings: Settings) -> None:
    # Only the agent's own modules: a device has the bare package, without the server's.
    from services.agent.main import AgentConfig, default_state_dir, run_agent
    from services.agent.protocol import DEVICE_ID_PATTERN
    from services.cli.lifecycle import run_until_signal

    if not re.match(DEVICE_ID_PATTERN, args.device_id):
        raise SystemExit(f"--device-id {args.device_id!r}: use letters, digits, _ : - (no dots)")
    labels = dict(label.partition("=")[::2] for label in args.label)
    if not 0.5 <= args.heartbeat_seconds <= 3600:
        raise SystemExit(f"--heartbeat-seconds {args.heartbeat_seconds}: use 0.5 to 3600")
    config = AgentConfig(
        device_id=args.device_id,
        nats_url=args.nats or settings.nats_url,
        creds=args.creds,
        tls_ca=args.tls_ca or (Path(settings.nats_ca) if settings.nats_ca else None),
        run_as=args.run_as,
        state_dir=args.state_dir or default_state_dir(),
        allow_roots=args.allow_root,
        labels=labels,
        driver_modules=args.driver_module,
        heartbeat_seconds=args.heartbeat_seconds,
    )
    # Jobs inherit the agent's environment: none of the settings it was started with (a
    # database URL, the services' NATS login, where they share a container's environment).
    # Read once, above; each job gets its own DEPLOYX_DEVICE_ID, _EXECUTION_ID and _TASK_ID.
    for name in SETTING_VARIABLES:
        os.environ.pop(name, None)

    async def serve_agent(_settings: Settings, stop: asyncio.Event) -> None:
        await run_agent(config, stop)

    run_until_signal(settings, [serve_agent])


def _nats_auth(args: argparse.Namespace, _settings: Settings) -> None:
    from services.infra.nats_auth import write_auth_files

    devices = [device.strip() for device in args.agents.split(",") if device.strip()]
    try:
        service = write_auth_files(args.out, devices)
    except ValueError as exc:  # a bad device id, or a path leading out of --out
        raise SystemExit(f"deployx nats-auth: {exc}; nothing was written") from None
    print(f"{args.out / 'auth.conf'}: include it in nats-server.conf, then reload the server")
    print(f"{args.out / 'agents'}/<device-id>.json: give each agent its own, as --creds")
    print(f"services: DEPLOYX_NATS_URL=nats://{service.user}:{service.password}@HOST:4222")
