"""The API records what users ask for; it does not reach into the executors that act on it."""

from __future__ import annotations

import subprocess
import sys

from tests.packaging.importtime import imports

API_MODULE = "services.api.app"


def test_the_api_imports_no_executor_module() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {API_MODULE}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = imports(done.stderr)
    assert API_MODULE in {i.module for i in found}  # importtime did report them
    executor = [i.chain for i in found if i.module.startswith("services.executor")]
    assert executor == [], "\n".join(executor)
