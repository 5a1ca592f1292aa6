"""`python -m bench all [--quick] [--soak]`: run every benchmark and write bench/REPORT.md.

Each benchmark also runs alone: `python -m bench.<name> [--quick]` (see bench/report.py).
"""

from __future__ import annotations

import sys

from bench.report import AREA_NAMES, main

USAGE = "usage: python -m bench all [--quick] [--soak] [--only AREAS] [--output PATH]"


def run(argv: list[str]) -> int:
    """Dispatch `all` to the report; anything else gets the usage."""
    if not argv or argv[0] != "all":
        print(USAGE, file=sys.stderr)
        print("areas: " + ", ".join(AREA_NAMES), file=sys.stderr)
        return 2
    return main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
