"""What an install weighs: disk and `deployx agent --help` import time, bare and with extras.

    .venv/bin/python -m bench.footprint [--runs 7] [--source DIR]

Builds the wheel of the checkout (or of --source, another checkout: an older commit's), makes
fresh venvs in a temporary directory and installs it bare (the agent), with [server], and with
[server,embedded]. For each: the disk its packages take beyond a fresh venv's (du of
site-packages, minus the fresh one's), the distributions installed, and the import time of
`deployx agent --help` (`python -X importtime`, all imports together; median of --runs, after
one run that writes the bytecode caches).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from tests.packaging.importtime import import_seconds
from tests.packaging.venvs import REPO, Venv, build_wheel, run

EXTRAS = {"bare": "", "server": "[server]", "full": "[server,embedded]"}


def disk_kib(root: Path) -> int:
    """What du -sk says: blocks actually used, each file counted once."""
    seen: set[tuple[int, int]] = set()
    blocks = 0
    for path in [root, *root.rglob("*")]:
        stat = path.lstat()
        if (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            blocks += stat.st_blocks
    return blocks * 512 // 1024


def agent_help_seconds(venv: Venv, runs: int, cwd: Path) -> float:
    argv = [venv.bin("python"), "-X", "importtime", venv.bin("deployx"), "agent", "--help"]
    run(argv, cwd=cwd)  # writes the .pyc files: a device runs the agent more than once
    return statistics.median(import_seconds(run(argv, cwd=cwd).stderr) for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--source", type=Path, default=REPO, help="the checkout to build")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="deployx-footprint-"))
    try:
        wheel = build_wheel(base / "dist", args.source.resolve())
        empty = disk_kib(Venv(base / "empty").site_packages())
        print("| install | distributions | disk beyond a fresh venv | agent --help imports |")
        print("| --- | --- | --- | --- |")
        for name, extras in EXTRAS.items():
            venv = Venv(base / name)
            venv.install(f"{wheel}{extras}")
            mib = (disk_kib(venv.site_packages()) - empty) / 1024
            count = len(venv.distributions() - {"pip", "setuptools"})
            seconds = agent_help_seconds(venv, args.runs, base)
            print(f"| {name} `{extras}` | {count} | {mib:.1f} MiB | {seconds * 1e3:.0f} ms |")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
