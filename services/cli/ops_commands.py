"""The commands that keep a deployment's data: `deployx backup` and `deployx restore`.

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
    backup = commands.add_parser(
        "backup", help="write the log and what replay cannot rebuild to a file, while running"
    )
    backup.add_argument("--out", type=Path, required=True, help="the backup file (mode 0600)")
    stack_dir_option(backup)
    backup.set_defaults(run=_backup)

    restore = commands.add_parser(
        "restore", help="load a backup into an empty database, then rebuild the read tables"
    )
    restore.add_argument("--file", type=Path, required=True, help="a `deployx backup` file")
    stack_dir_option(restore)
    restore.set_defaults(run=_restore)


def _backup(args: argparse.Namespace, settings: Settings) -> None:
    from services.cli.backup import backup_command, database_of

    with database_of(args.stack_dir, settings) as url:
        asyncio.run(backup_command(url, args.out))


def _restore(args: argparse.Namespace, settings: Settings) -> None:
    from services.cli.backup import database_of, restore_command

    with database_of(args.stack_dir, settings) as url:
        asyncio.run(restore_command(url, args.file))
