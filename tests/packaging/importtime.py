"""What a command imports, read from `python -X importtime`, and which of it is the server's."""

from __future__ import annotations

import importlib.metadata
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
# The project's own server side: the agent needs none of it.
SERVER_PACKAGES = ("services.api", "services.engine", "services.executor", "projections")


@dataclass(frozen=True)
class Import:
    module: str
    importers: tuple[str, ...]  # the modules whose import led to this one, outermost first
    cumulative_us: int

    @property
    def chain(self) -> str:
        return " > ".join((*self.importers, self.module))


def imports(importtime_output: str) -> list[Import]:
    """Every import `-X importtime` reported (on stderr), with the chain that led to it."""
    rows: list[tuple[int, str, int]] = []
    for line in importtime_output.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            _, microseconds, name = line.split("|")
            if microseconds.strip().isdigit():  # not the header line
                depth = (len(name) - len(name.lstrip()) - 1) // 2
                rows.append((depth, name.strip(), int(microseconds)))
    # Lines come as imports finish, a module after those it imported: read backwards, each
    # line's importers are the last shallower lines seen.
    found: list[Import] = []
    stack: list[str] = []
    for depth, module, cumulative in reversed(rows):
        del stack[depth:]
        found.append(Import(module, tuple(stack), cumulative))
        stack.append(module)
    return found[::-1]


def import_seconds(importtime_output: str) -> float:
    """All imports together: the cumulative times of the outermost ones, added up."""
    return sum(i.cumulative_us for i in imports(importtime_output) if not i.importers) / 1e6


def _modules_of(requirements: list[str]) -> set[str]:
    """The top-level modules of the installed distributions these requirements name."""
    wanted = {canonicalize_name(Requirement(r).name) for r in requirements}
    return {
        module
        for module, owners in importlib.metadata.packages_distributions().items()
        if any(canonicalize_name(owner) in wanted for owner in owners)
    }


def server_imports(found: list[Import]) -> list[Import]:
    """The imports of the server's libraries (the [server] and [embedded] extras) or packages,
    made by our code. A library of the bare package may probe for an optional module (nats-py
    tries aiohttp for WebSocket URLs) that a bare install does not have: that is not ours."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    extras = project["optional-dependencies"]
    server = _modules_of(extras["server"] + extras["embedded"])
    base = _modules_of(project["dependencies"])
    return [
        i
        for i in found
        if (
            i.module.partition(".")[0] in server
            or any(i.module == p or i.module.startswith(p + ".") for p in SERVER_PACKAGES)
        )
        and not any(importer.partition(".")[0] in base for importer in i.importers)
    ]
