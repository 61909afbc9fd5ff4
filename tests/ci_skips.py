"""A pytest plugin: under CI=true any skipped test fails the run, and the skips are listed.

A test skips when something it needs is missing (Chromium, a tool, a package); on a developer's
machine that is a footnote, in CI it would hide part of the suite behind a green build.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _skipped(config: pytest.Config) -> int:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return len(reporter.stats.get("skipped", [])) if reporter is not None else 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if in_ci() and exitstatus == pytest.ExitCode.OK and _skipped(session.config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = _skipped(terminalreporter.config)
    if in_ci() and skipped:
        terminalreporter.write_sep("=", "CI=true: a skipped test is a failure", red=True)
        terminalreporter.write_line(
            f"{skipped} test(s) skipped, listed below: install what they need, or run them"
        )
