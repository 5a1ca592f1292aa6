"""The `foundation-p2p` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from foundation_p2p import __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="foundation-p2p",
        description="Peer-to-peer replicated state for Python services.",
    )
    parser.add_argument("--version", action="version", version=f"foundation-p2p {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
