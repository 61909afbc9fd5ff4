"""Files the wheel ships inside the package (the console, the schema), found in a checkout too."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# The repository's top level, where web/ and schema.sql live in a checkout (editable install).
_CHECKOUT = Path(__file__).resolve().parents[2]


def package_file(package: str, name: str) -> Path:
    """`name` inside `package` as a built wheel installs it (pyproject.toml's force-include
    puts it there), else `name` at the top level of the checkout this code runs from."""
    # A wheel installs as plain files, so the resource is a real path aiohttp can serve from.
    installed = Path(str(resources.files(package) / name))
    return installed if installed.exists() else _CHECKOUT / name
