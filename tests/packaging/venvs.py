"""A built wheel and fresh venvs to install it in: the package as a user gets it, no checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DISTRIBUTION = "deployx-scheduler"


def build_wheel(out_dir: Path, source: Path = REPO) -> Path:
    """The project's wheel, built from the checkout as `pip wheel` builds it for a user."""
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out_dir)]
    run([*pip_wheel, str(source)], cwd=out_dir.parent, timeout=300)
    wheels = list(out_dir.glob("deployx_scheduler-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def clean_env(**extra: str) -> dict[str, str]:
    """Ours without anything that would lead a child to the checkout, its venv or our servers."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in dropped and not name.startswith("DEPLOYX_")
    }
    return env | extra


def run(
    argv: list[str], cwd: Path, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """argv in a clean environment, in cwd: never the checkout, where `python -c` or `-m` would
    import the checkout's packages instead of the installed ones. With check, a failure shows
    what it printed."""
    done = subprocess.run(
        argv,
        cwd=cwd,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


class Venv:
    """A fresh virtual environment at `path`, made with the Python running the tests."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # The base interpreter: a venv made from a venv's python would still be a fresh one,
        # but say plainly that nothing of ours comes along.
        base = getattr(sys, "_base_executable", sys.executable)
        run([base, "-m", "venv", str(path)], cwd=path.parent, timeout=120)

    def bin(self, name: str) -> str:
        return str(self.path / "bin" / name)

    def install(self, requirement: str) -> None:
        pip = [self.bin("python"), "-m", "pip", "install", "-q", requirement]
        run(pip, cwd=self.path, timeout=600)

    def distributions(self) -> set[str]:
        """The names of the distributions installed, lower-case, as `pip list` shows them."""
        listed = run([self.bin("python"), "-m", "pip", "list", "--format=freeze"], cwd=self.path)
        return {line.split("==")[0].lower() for line in listed.stdout.splitlines() if line}

    def site_packages(self) -> Path:
        script = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        return Path(run([self.bin("python"), "-c", script], cwd=self.path).stdout.strip())
