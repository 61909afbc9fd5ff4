"""Every scale benchmark of issue 12 in one command: each `bench.scale_*` module's main, in turn.

    .venv/bin/python -m bench.scale [--only projections,queries]

Each module starts what it measures itself (bench/README.md says what and has the figures);
arguments after `--` go to every module (e.g. `-- --tasks 20000`).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import bench


def modules() -> list[str]:
    """The scale_* modules of this checkout, by name (projections, queries, ...)."""
    return sorted(
        info.name.removeprefix("scale_")
        for info in pkgutil.iter_modules(bench.__path__)
        if info.name.startswith("scale_")
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    rest: list[str] = []
    if "--" in args:
        args, rest = args[: args.index("--")], args[args.index("--") + 1 :]
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--only", help="comma-separated: " + ", ".join(modules()))
    options = parser.parse_args(args)
    names = modules()
    if options.only:
        wanted = options.only.split(",")
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"--only: no bench.scale_{unknown[0]}; there are {', '.join(names)}")
        names = [name for name in names if name in wanted]
    for name in names:
        print(f"== bench.scale_{name}", flush=True)
        # Each main reads its own arguments from sys.argv, as when run with -m.
        sys.argv = [f"bench.scale_{name}", *rest]
        importlib.import_module(f"bench.scale_{name}").main()


if __name__ == "__main__":
    main()
