"""A package-manager driver for tests: "installs" by writing files under $DEPLOYX_FAKE_PKG_ROOT."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from services.agent.process import ProcessResult
from services.agent.software import PackageDriver, register_driver

ROOT_VARIABLE = "DEPLOYX_FAKE_PKG_ROOT"
DEFAULT_VERSION = "1.0.0"

# Run as a real child process, so the driver goes through the same process handling as apt.
TOOL = """
import os, pathlib, sys, time
action, root, package, version = sys.argv[1:]
record = pathlib.Path(root) / package
if version == "hang":
    (pathlib.Path(root) / f"{package}.pid").write_text(str(os.getpid()))
    time.sleep(60)
if version == "broken":
    print(f"E: {package} {version} is not in any repository", file=sys.stderr)
    sys.exit(100)
if action == "upgrade" and not record.exists():
    print(f"E: {package} is not installed, nothing to upgrade", file=sys.stderr)
    sys.exit(3)
if action == "uninstall":
    record.unlink(missing_ok=True)
    print(f"removed {package}")
else:
    if version == "-":  # an upgrade to the next minor version
        major, minor, _ = record.read_text().split(".")
        version = f"{major}.{int(minor) + 1}.0"
    record.write_text(version)
    print(f"{action}ed {package} {version}")
"""


@register_driver
class FakeDriver(PackageDriver):
    """The "fake" package manager: available whenever $DEPLOYX_FAKE_PKG_ROOT is a directory."""

    name = "fake"

    def _root(self) -> Path:
        return Path(os.environ.get(ROOT_VARIABLE, "/nonexistent-deployx-fake-root"))

    def available(self) -> bool:
        return self._root().is_dir()

    async def _tool(self, action: str, package: str, version: str | None) -> ProcessResult:
        argv = [sys.executable, "-c", TOOL, action, str(self._root()), package, version or "-"]
        return await self.run(*argv)

    async def install(self, package: str, version: str | None) -> ProcessResult:
        return await self._tool("install", package, version or DEFAULT_VERSION)

    async def upgrade(self, package: str, version: str | None) -> ProcessResult:
        return await self._tool("upgrade", package, version)

    async def uninstall(self, package: str) -> ProcessResult:
        return await self._tool("uninstall", package, None)

    async def installed_version(self, package: str) -> str | None:
        record = self._root() / package
        return record.read_text() if record.is_file() else None
