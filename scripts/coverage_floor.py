"""Fails when a production module's line coverage is under the floor: `scripts/test --cov`.

Reads the JSON report of `coverage json` (argv[1]) and prints every module below FLOOR.
"""

from __future__ import annotations

import json
import sys

FLOOR = 80.0


def main(report_path: str) -> int:
    with open(report_path) as report:
        files = json.load(report)["files"]
    below = sorted(
        (summary["summary"]["percent_covered"], path)
        for path, summary in files.items()
        if summary["summary"]["percent_covered"] < FLOOR
    )
    for percent, path in below:
        print(f"  {percent:5.1f} %  {path}")
    if below:
        print(f"coverage: {len(below)} module(s) under {FLOOR:.0f} %", file=sys.stderr)
        return 1
    print(f"coverage: every module at {FLOOR:.0f} % or more")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
