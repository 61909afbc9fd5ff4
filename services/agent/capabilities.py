"""What this device can run, found once at the agent's start and announced in its heartbeat:
the shells of the command kind on its PATH, the package managers whose driver is available,
its OS family and CPU architecture."""

from __future__ import annotations

import platform
import re
import shutil
from collections.abc import Callable, Iterable
from typing import get_args

from services.agent.command import SHELLS
from services.agent.protocol import (
    MAX_LISTED,
    PACKAGE_MANAGER_PATTERN,
    Capabilities,
    OsFamily,
    Shell,
)
from services.agent.software import DRIVERS

_OS_FAMILIES: dict[str, OsFamily] = {
    "linux": "linux",
    "darwin": "darwin",
    "windows": "windows",
    "freebsd": "freebsd",
}
# platform.machine() spells one architecture several ways.
_ARCHES = {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64", "armv8": "arm64"}
_PACKAGE_MANAGER = re.compile(PACKAGE_MANAGER_PATTERN)


def os_family(system: str) -> OsFamily:
    """platform.system() ("Linux", "Darwin", "Windows", ...) as one of the protocol's words."""
    return _OS_FAMILIES.get(system.strip().lower(), "other")


def arch_of(machine: str) -> str:
    """platform.machine() in one spelling per architecture ("AMD64" -> "x86_64")."""
    word = re.sub(r"[^a-z0-9_]", "_", machine.strip().lower())[:16]
    return _ARCHES.get(word, word) or "unknown"


def shells_on(which: Callable[[str], str | None]) -> list[Shell]:
    """The command kind's shells whose program `which` finds, in a fixed order."""
    return [shell for shell in get_args(Shell) if which(SHELLS[shell][0]) is not None]


def package_managers(available: Iterable[tuple[str, Callable[[], bool]]]) -> list[str]:
    """The names of the drivers that say they are available, sorted; a driver whose name the
    protocol would refuse, or that fails to answer, is left out."""
    found: set[str] = set()
    for name, is_available in available:
        if not _PACKAGE_MANAGER.match(name):
            continue
        try:
            if is_available():
                found.add(name)
        except Exception:  # a driver module's bug must not stop the agent from starting
            continue
    return sorted(found)[:MAX_LISTED]


def detect() -> Capabilities:
    """This device's capabilities now (after any --driver-module was loaded)."""
    drivers = [(name, cls().available) for name, cls in DRIVERS.items()]
    return Capabilities(
        shells=shells_on(shutil.which),
        package_managers=package_managers(drivers),
        os=os_family(platform.system()),
        arch=arch_of(platform.machine()),
    )
