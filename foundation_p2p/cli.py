"""The `foundation-p2p` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from foundation_p2p import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="foundation-p2p",
        description="Peer-to-peer replicated state for Python services.",
    )
    parser.add_argument("--version", action="version", version=f"foundation-p2p {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    simulate = commands.add_parser(
        "simulate",
        help="run a fault scenario in the deterministic simulator",
        description=(
            "Run a named fault scenario on a simulated cluster (virtual time, modelled "
            "network), print a summary and optionally write an HTML report. Exit code: 0 if "
            "the cluster converged and every checker passed, 1 if not, 2 on a usage error."
        ),
    )
    simulate.add_argument("scenario", nargs="?", help="scenario name (see --list)")
    simulate.add_argument("--nodes", type=int, default=7, help="cluster size (default: 7)")
    simulate.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    simulate.add_argument("--report", metavar="PATH", help="write an HTML report to PATH")
    simulate.add_argument("--list", action="store_true", help="list the scenarios and exit")
    simulate.set_defaults(run=_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return EXIT_OK
    code: int = run(args)
    return code


def _simulate(args: argparse.Namespace) -> int:
    # The one sanctioned upward import (DESIGN.md): the simulator loads only for this command.
    from simulations.report import summary, write_html
    from simulations.scenarios import SCENARIOS, run_scenario

    if args.list:
        width = max(len(name) for name in SCENARIOS)
        for name, scenario in SCENARIOS.items():
            doc = (scenario.__doc__ or "").strip().splitlines()
            print(f"{name.ljust(width)}  {doc[0] if doc else ''}")
        return EXIT_OK
    if args.scenario not in SCENARIOS:
        problem = (
            "no scenario given"
            if args.scenario is None
            else (f"unknown scenario {args.scenario!r}")
        )
        print(f"foundation-p2p simulate: {problem}", file=sys.stderr)
        print(f"valid scenarios: {', '.join(SCENARIOS)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = run_scenario(args.scenario, args.nodes, args.seed)
    except ValueError as exc:
        print(f"foundation-p2p simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(summary(result))
    if args.report:
        path = write_html(result, args.report)
        print(f"report written to {path}")
    return EXIT_OK if result.passed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
