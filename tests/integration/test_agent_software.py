"""Software jobs through a driver the test provides (real child processes), and the real ones."""

from __future__ import annotations

import importlib.metadata
import shutil
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from services.agent.software import (
    DETECTION_ORDER,
    DRIVERS,
    AptDriver,
    PipDriver,
    choose_driver,
    load_driver_modules,
    run_software,
)
from services.domain.kinds.software import SoftwarePayload
from tests.integration.test_agent_command import gone

FAKE_MODULE = "tests.e2e.fake_driver"


@pytest.fixture
def fake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The fake driver loaded as the agent's --driver-module would, with its package root."""
    load_driver_modules([FAKE_MODULE])
    monkeypatch.setenv("DEPLOYX_FAKE_PKG_ROOT", str(tmp_path))
    yield tmp_path


def fake(package: str, action: str = "install", **fields: object) -> SoftwarePayload:
    payload = {"package": package, "action": action, "manager": "fake", **fields}
    return msgspec.convert(payload, SoftwarePayload)


async def test_install_upgrade_uninstall_report_versions(fake_root: Path) -> None:
    outcome = await run_software(fake("tool"))
    assert outcome.status == "success", outcome
    assert outcome.exit_code == 0
    assert outcome.stdout == "installed tool 1.0.0\n"
    assert outcome.details == {
        "driver": "fake",
        "previous_version": None,
        "installed_version": "1.0.0",
    }
    assert (fake_root / "tool").read_text() == "1.0.0"

    outcome = await run_software(fake("tool", "upgrade"))
    assert outcome.status == "success", outcome
    assert outcome.details["previous_version"] == "1.0.0"
    assert outcome.details["installed_version"] == "1.1.0"

    outcome = await run_software(fake("tool", "upgrade", version="2.5.1"))
    assert outcome.details["installed_version"] == "2.5.1"

    outcome = await run_software(fake("tool", "uninstall"))
    assert outcome.status == "success", outcome
    assert outcome.details["previous_version"] == "2.5.1"
    assert outcome.details["installed_version"] is None
    assert not (fake_root / "tool").exists()


async def test_install_of_a_pinned_version(fake_root: Path) -> None:
    outcome = await run_software(fake("lib", version="3.2.1"))
    assert outcome.status == "success"
    assert outcome.details["installed_version"] == "3.2.1"


async def test_tool_failure_reports_exit_code_and_output(fake_root: Path) -> None:
    outcome = await run_software(fake("ghost", "upgrade"))
    assert outcome.status == "failed"
    assert outcome.exit_code == 3
    assert outcome.stderr == "E: ghost is not installed, nothing to upgrade\n"
    assert outcome.error == "fake upgrade ghost failed with exit code 3"
    assert outcome.details["installed_version"] is None

    outcome = await run_software(fake("lib", version="broken"))
    assert outcome.status == "failed"
    assert outcome.exit_code == 100
    assert "not in any repository" in outcome.stderr


async def test_timeout_kills_the_package_tool(fake_root: Path) -> None:
    outcome = await run_software(fake("slow", version="hang", timeout_seconds=1))
    assert outcome.status == "timeout"
    assert outcome.error == "fake install slow timed out after 1 s"
    assert gone(int((fake_root / "slow.pid").read_text()))


async def test_unknown_driver_fails_naming_it_and_the_available_ones(fake_root: Path) -> None:
    outcome = await run_software(SoftwarePayload(package="x", manager="brew"))
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error.startswith("unknown package manager 'brew'; available: ")
    assert "fake" in outcome.error and "pip" in outcome.error


async def test_a_driver_whose_tool_is_missing_fails_clearly(
    fake_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOYX_FAKE_PKG_ROOT", str(fake_root / "not-there"))
    outcome = await run_software(fake("tool"))
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error.startswith("package manager 'fake' is missing here; available: ")
    assert "fake," not in outcome.error and "pip" in outcome.error


def test_detection_picks_the_first_available_builtin() -> None:
    driver = choose_driver(None)
    assert driver.name in DETECTION_ORDER and driver.available()
    assert set(DETECTION_ORDER) <= set(DRIVERS)


async def test_pip_driver_is_available_and_reads_versions() -> None:
    pip = PipDriver()
    assert pip.available()
    assert await pip.installed_version("msgspec") == importlib.metadata.version("msgspec")
    assert await pip.installed_version("deployx-no-such-package") is None


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="no dpkg on this machine")
async def test_apt_driver_reads_versions_from_dpkg() -> None:
    apt = AptDriver()
    assert await apt.installed_version("bash")
    assert await apt.installed_version("deployx-no-such-package") is None
