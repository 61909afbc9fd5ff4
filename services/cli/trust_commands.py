"""The commands of webhooks and the audit chain: `deployx webhooks`, `sealer`, `audit ...`.

Imports what a command needs only when it runs, like the rest of the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.infra.settings import Settings

Commands = Any  # argparse's _SubParsersAction, which typeshed keeps private


def add_commands(
    commands: Commands, stack_dir_option: Callable[[argparse.ArgumentParser], None]
) -> None:
    webhooks = commands.add_parser("webhooks", help="delivers events to webhook subscriptions")
    webhooks.set_defaults(run=_service)
    sealer = commands.add_parser("sealer", help="seals the log into the audit hash chain")
    sealer.set_defaults(run=_service)

    audit = commands.add_parser("audit", help="the sealed audit log: verify, export, head")
    actions = audit.add_subparsers(required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify", help="check that no sealed event was altered, removed or reordered"
    )
    verify.add_argument("--file", type=Path, help="check this export, without any database")
    verify.add_argument(
        "--anchor",
        action="append",
        default=[],
        metavar="POSITION:HASH",
        help="a chain head kept elsewhere (`deployx audit head`), to check too (repeatable)",
    )
    stack_dir_option(verify)
    verify.set_defaults(run=_verify)

    export = actions.add_parser("export", help="write the sealed log as JSON lines")
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--after", type=int, help="only events sealed after this position")
    stack_dir_option(export)
    export.set_defaults(run=_export)

    head = actions.add_parser("head", help="print the chain's head: an anchor to keep elsewhere")
    head.add_argument(
        "--from-nats", action="store_true", help="the latest anchor kept on NATS instead"
    )
    stack_dir_option(head)
    head.set_defaults(run=_head)


def _service(args: argparse.Namespace, settings: Settings) -> None:
    from services.cli import runtime
    from services.cli.trust_services import serve_sealer, serve_webhooks

    runtime.run_alone(settings, serve_webhooks if args.command == "webhooks" else serve_sealer)


def _verify(args: argparse.Namespace, settings: Settings) -> None:
    from services.cli.audit import parse_anchor, verify_database, verify_file

    anchors = dict(parse_anchor(text) for text in args.anchor)
    if args.file is not None:
        code = verify_file(args.file, anchors)
    else:
        code = asyncio.run(verify_database(settings.database_url, anchors))
    raise SystemExit(code)


def _export(args: argparse.Namespace, settings: Settings) -> None:
    from services.cli.audit import export, open_export

    with open_export(args.out) as file:
        code = asyncio.run(export(settings.database_url, file, args.after))
    raise SystemExit(code)


def _head(args: argparse.Namespace, settings: Settings) -> None:
    from services.cli.audit import current_head, print_head

    if not args.from_nats:
        print_head(asyncio.run(current_head(settings.database_url)))
        return
    from services.cli.audit import latest_anchor

    anchor = asyncio.run(latest_anchor(settings))
    if anchor is None:
        raise SystemExit("no anchor on NATS yet: is `deployx sealer` (or `up`) running?")
    print_head(anchor)
