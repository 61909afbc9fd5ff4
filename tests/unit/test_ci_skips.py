"""Under CI=true a skipped test fails the run (tests/ci_skips.py), in a real pytest run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUITE = """
import pytest

def test_runs():
    assert True

def test_needs_a_browser():
    if NEEDS_SKIP:
        pytest.skip("no Chromium at /usr/bin/chromium")
"""


def run_suite(tmp_path: Path, *, ci: str | None, skip: bool) -> subprocess.CompletedProcess[str]:
    """pytest on a two-test suite of its own, with the plugin, as scripts/test runs it."""
    (tmp_path / "test_demo.py").write_text(f"NEEDS_SKIP = {skip}\n{SUITE}")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(REPO)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # quicker; the plugin comes with -p
    if ci is not None:
        env["CI"] = ci
    plugins = ["-p", "tests.ci_skips", "-p", "no:cacheprovider", "-rs"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *plugins, "--rootdir", str(tmp_path), "test_demo.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("ci", ["true", "1"])
def test_in_ci_a_skip_fails_the_run_and_says_why(tmp_path: Path, ci: str) -> None:
    run = run_suite(tmp_path, ci=ci, skip=True)
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout + run.stderr
    assert "CI=true: a skipped test is a failure" in run.stdout
    assert "SKIPPED [1]" in run.stdout and "no Chromium at /usr/bin/chromium" in run.stdout


def test_in_ci_a_run_without_skips_passes(tmp_path: Path) -> None:
    run = run_suite(tmp_path, ci="true", skip=False)
    assert run.returncode == pytest.ExitCode.OK, run.stdout + run.stderr
    assert "a skipped test is a failure" not in run.stdout


def test_outside_ci_a_skip_is_listed_but_passes(tmp_path: Path) -> None:
    run = run_suite(tmp_path, ci=None, skip=True)
    assert run.returncode == pytest.ExitCode.OK, run.stdout + run.stderr
    assert "SKIPPED [1]" in run.stdout
