"""Runs a software job through a package-manager driver: apt, dnf, pip, or one a module adds."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import re
import shutil
import sys
from abc import ABC, abstractmethod
from typing import Any, ClassVar, TypeVar

from services.agent.process import ProcessResult, run_process
from services.agent.protocol import JobOutcome
from services.domain.kinds.software import SoftwarePayload

DETECTION_ORDER = ("apt", "dnf", "pip")


class DriverUnavailable(Exception):
    """The payload named a driver that is unknown, or no driver's tool is on this device."""


class PackageDriver(ABC):
    """One package manager. Actions return the tool's ProcessResult; exit code 0 is success."""

    name: ClassVar[str] = ""

    @abstractmethod
    def available(self) -> bool: ...

    @abstractmethod
    async def install(self, package: str, version: str | None) -> ProcessResult: ...

    @abstractmethod
    async def upgrade(self, package: str, version: str | None) -> ProcessResult: ...

    @abstractmethod
    async def uninstall(self, package: str) -> ProcessResult: ...

    @abstractmethod
    async def installed_version(self, package: str) -> str | None: ...

    async def run(self, *argv: str, env: dict[str, str] | None = None) -> ProcessResult:
        """Runs a tool in its own process group; cancelling the job kills the group."""
        return await run_process(list(argv), env={**os.environ, **(env or {})})


DriverClass = TypeVar("DriverClass", bound=type[PackageDriver])
DRIVERS: dict[str, type[PackageDriver]] = {}


def register_driver(cls: DriverClass) -> DriverClass:
    """Class decorator: makes cls choosable by its name; a later class of the same name wins."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    DRIVERS[cls.name] = cls
    return cls


@register_driver
class AptDriver(PackageDriver):
    name = "apt"

    def available(self) -> bool:
        return shutil.which("apt-get") is not None and shutil.which("dpkg-query") is not None

    async def _apt_get(self, *args: str) -> ProcessResult:
        return await self.run(
            "apt-get", "-y", "-q", *args, env={"DEBIAN_FRONTEND": "noninteractive"}
        )

    async def install(self, package: str, version: str | None) -> ProcessResult:
        await self._apt_get("update")  # best effort: a broken mirror must not block the install
        return await self._apt_get("install", f"{package}={version}" if version else package)

    async def upgrade(self, package: str, version: str | None) -> ProcessResult:
        await self._apt_get("update")
        spec = f"{package}={version}" if version else package
        return await self._apt_get("install", "--only-upgrade", spec)

    async def uninstall(self, package: str) -> ProcessResult:
        return await self._apt_get("remove", package)

    async def installed_version(self, package: str) -> str | None:
        # A removed package keeps a version while its config files stay: look at the status.
        result = await self.run("dpkg-query", "-W", "-f=${db:Status-Status} ${Version}", package)
        status, _, version = result.stdout.strip().partition(" ")
        return version if result.exit_code == 0 and status == "installed" and version else None


@register_driver
class DnfDriver(PackageDriver):
    name = "dnf"

    def available(self) -> bool:
        return shutil.which("dnf") is not None and shutil.which("rpm") is not None

    async def _dnf(self, verb: str, package: str, version: str | None = None) -> ProcessResult:
        return await self.run("dnf", "-y", verb, f"{package}-{version}" if version else package)

    async def install(self, package: str, version: str | None) -> ProcessResult:
        return await self._dnf("install", package, version)

    async def upgrade(self, package: str, version: str | None) -> ProcessResult:
        return await self._dnf("upgrade", package, version)

    async def uninstall(self, package: str) -> ProcessResult:
        return await self._dnf("remove", package)

    async def installed_version(self, package: str) -> str | None:
        result = await self.run("rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}", package)
        return result.stdout.strip() or None if result.exit_code == 0 else None


@register_driver
class PipDriver(PackageDriver):
    name = "pip"

    def available(self) -> bool:
        return importlib.util.find_spec("pip") is not None

    async def _pip(self, *args: str) -> ProcessResult:
        return await self.run(sys.executable, "-m", "pip", *args, env={"PIP_NO_INPUT": "1"})

    async def install(self, package: str, version: str | None) -> ProcessResult:
        return await self._pip("install", f"{package}=={version}" if version else package)

    async def upgrade(self, package: str, version: str | None) -> ProcessResult:
        spec = f"{package}=={version}" if version else package
        return await self._pip("install", "--upgrade", spec)

    async def uninstall(self, package: str) -> ProcessResult:
        return await self._pip("uninstall", "-y", package)

    async def installed_version(self, package: str) -> str | None:
        result = await self._pip("show", package)
        found = re.search(r"^Version:\s*(\S+)", result.stdout, re.MULTILINE)
        return found.group(1) if result.exit_code == 0 and found else None


def load_driver_modules(names: list[str]) -> None:
    """Imports each module (e.g. from --driver-module) so that it can register its drivers."""
    for name in names:
        importlib.import_module(name)


def choose_driver(name: str | None) -> PackageDriver:
    """The named driver, else the first available of apt, dnf, pip; DriverUnavailable if none."""
    available = sorted(key for key, cls in DRIVERS.items() if cls().available())
    shown = ", ".join(available) or "none"
    if name is None:
        name = next((key for key in DETECTION_ORDER if key in available), None)
        if name is None:
            raise DriverUnavailable(f"no package manager found on this device; available: {shown}")
    if name not in DRIVERS:
        raise DriverUnavailable(f"unknown package manager {name!r}; available: {shown}")
    if name not in available:
        raise DriverUnavailable(f"package manager {name!r} is missing here; available: {shown}")
    return DRIVERS[name]()


async def run_software(payload: SoftwarePayload, _context: object = None) -> JobOutcome:
    """Runs a software_payload: package, version, action, manager, timeout_seconds."""
    package, version, action = payload.package, payload.version, payload.action
    timeout = payload.timeout_seconds
    try:
        driver = choose_driver(payload.manager)
    except DriverUnavailable as exc:
        return JobOutcome(status="failed", error=str(exc))
    details: dict[str, Any] = {"driver": driver.name}
    what = f"{driver.name} {action} {package}"
    try:
        async with asyncio.timeout(timeout):
            details["previous_version"] = await driver.installed_version(package)
            act = driver.install if action == "install" else driver.upgrade
            uninstall = action == "uninstall"
            result = await (driver.uninstall(package) if uninstall else act(package, version))
            installed = await driver.installed_version(package)
    except TimeoutError:
        return JobOutcome(status="timeout", error=f"{what} timed out after {timeout:g} s")
    except Exception as exc:  # a driver's bug is the job's failure, not the agent's
        return JobOutcome(status="failed", error=f"{what}: {exc!r}", details=details)
    details["installed_version"] = installed
    details |= result.truncation()
    error: str | None = None
    if result.error is not None or result.exit_code != 0:
        error = result.error or f"{what} failed with exit code {result.exit_code}"
    elif action == "uninstall" and installed is not None:
        error = f"{what}: still installed, version {installed}"
    elif action != "uninstall" and installed is None:
        error = f"{what}: the package manager reports it is not installed afterwards"
    status = "failed" if error else "success"
    output: dict[str, Any] = {"stdout": result.stdout, "stderr": result.stderr, "details": details}
    return JobOutcome(status=status, exit_code=result.exit_code, error=error, **output)


run = run_software  # the software deployment kind's runner
