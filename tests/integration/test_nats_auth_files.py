"""`deployx nats-auth`: its files are private from their first byte, and it writes only in --out."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.infra.nats_auth import write_auth_files
from tests.e2e.processes import deployx_command

# The chmod calls the audit hook saw while a test watched (path or file descriptor, mode).
_chmods: list[tuple[object, object]] | None = None
_hooked = False


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _chmods is not None and event == "os.chmod":  # os.chmod, os.fchmod, Path.chmod
        _chmods.append((args[0], args[1]))


@pytest.fixture
def chmods() -> Iterator[list[tuple[object, object]]]:
    """Every chmod this process makes meanwhile, as Python's audit hooks report them (they
    observe the real calls; nothing is replaced), under umask 0: a file created without an
    explicit mode would be readable by everyone, unless something narrowed it afterwards."""
    global _chmods, _hooked
    if not _hooked:
        sys.addaudithook(_audit)
        _hooked = True
    _chmods = []
    umask = os.umask(0)
    try:
        yield _chmods
    finally:
        os.umask(umask)
        _chmods = None


def test_every_file_is_created_readable_by_its_owner_only(
    tmp_path: Path, chmods: list[tuple[object, object]]
) -> None:
    out = tmp_path / "nats"
    write_auth_files(out, ["dev-a", "dev-b"])
    write_auth_files(out, ["dev-c"])  # a second run rewrites auth.conf

    files = sorted(path for path in out.rglob("*") if path.is_file())
    assert [path.relative_to(out).as_posix() for path in files] == [
        "agents/dev-a.json",
        "agents/dev-b.json",
        "agents/dev-c.json",
        "auth.conf",
        "service.json",
    ]
    # 0600 with umask 0 and no chmod: the open that created each file gave it that mode.
    assert {oct(stat.S_IMODE(path.stat().st_mode)) for path in files} == {"0o600"}
    assert oct(stat.S_IMODE((out / "agents").stat().st_mode)) == "0o700"
    assert chmods == []


def run_nats_auth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*deployx_command(), "nats-auth", *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("agents", "named"),
    [
        ("*,../../x", "'*', '../../x'"),
        ("dev-a,../../x", "'../../x'"),
        ("dev-a,>", "'>'"),
        ("dev.a", "'dev.a'"),
        ("dev-a,dev b", "'dev b'"),
    ],
)
def test_bad_device_ids_are_refused_by_name_and_nothing_is_written(
    tmp_path: Path, agents: str, named: str
) -> None:
    out = tmp_path / "a" / "b" / "out"
    done = run_nats_auth("--agents", agents, "--out", str(out))
    assert done.returncode != 0
    assert f"bad device id {named}:" in done.stderr, done.stderr
    assert done.stdout == ""
    assert sorted(tmp_path.rglob("*")) == []


def test_a_symlink_out_of_the_directory_is_not_followed(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "agents").symlink_to(elsewhere)
    done = run_nats_auth("--agents", "dev-a", "--out", str(out))
    assert done.returncode != 0
    assert "leads outside" in done.stderr, done.stderr
    assert list(elsewhere.iterdir()) == []
    assert sorted(path.name for path in out.iterdir()) == ["agents"]


def test_good_ids_write_the_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run_nats_auth("--agents", "web-01, db:02,edge_3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(path.name for path in (out / "agents").iterdir()) == [
        "db:02.json",
        "edge_3.json",
        "web-01.json",
    ]
