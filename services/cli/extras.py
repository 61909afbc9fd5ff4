"""Which extra of the package brings a missing module: what a bare (agent) install lacks."""

from __future__ import annotations

import importlib.metadata
import re

DISTRIBUTION = "deployx-scheduler"
USER_EXTRAS = ("server", "embedded")  # not test or bench: no command needs those
# A requirement of the package's metadata that only an extra adds: `aiohttp>=3; extra == "server"`.
_EXTRA_REQUIREMENT = re.compile(r"""^\s*([A-Za-z0-9._-]+).*;.*\bextra\s*==\s*["']([^"']+)["']""")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def extra_providing(module: str) -> str | None:
    """The extra whose requirement installs `module` (its top-level name), from the installed
    package's metadata; None for a module no extra names, or a package not installed."""
    try:
        requirements = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    wanted = _canonical(module.partition(".")[0])
    for requirement in requirements:
        match = _EXTRA_REQUIREMENT.match(requirement)
        if match and _canonical(match[1]) == wanted and match[2] in USER_EXTRAS:
            return match[2]
    return None


def missing_extra_message(command: str, error: ModuleNotFoundError) -> str | None:
    """What to tell the user of `deployx <command>` that failed on `error`, if an extra fixes it."""
    extra = extra_providing(error.name or "")
    if extra is None:
        return None
    return (
        f"deployx {command}: this install lacks {error.name} (the [{extra}] extra): "
        f"pip install '{DISTRIBUTION}[{extra}]'"
    )
