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

    node = commands.add_parser(
        "node",
        help="run a node until SIGINT/SIGTERM, then leave gracefully",
        description="Run one cluster member in the foreground.",
    )
    node.add_argument("--cluster", default="default", help="cluster name (default: default)")
    node.add_argument("--node-id", help="this node's id (default: hostname plus a random suffix)")
    node.add_argument(
        "--listen", help="gossip address host:port (default: the config's, 127.0.0.1:0)"
    )
    node.add_argument("--advertise", help="address peers should dial, if not --listen")
    node.add_argument("--seeds", default="", help="comma-separated seed addresses host:port")
    node.add_argument("--mdns", action="store_true", help="find peers by mDNS")
    node.add_argument(
        "--discovery",
        choices=["auto", "mdns", "static", "dns", "kubernetes", "consul", "none"],
        help="how peers are found; auto picks by environment (default: --seeds or --mdns)",
    )
    node.add_argument("--config", metavar="FILE", help="TOML config (profile and settings)")
    node.add_argument(
        "--mdns-interface",
        action="append",
        metavar="IP",
        help="restrict mDNS to this interface address (repeatable)",
    )
    node.add_argument("--key-file", help="file holding the base64 cluster key")
    node.add_argument("--http", help="serve the HTTP API on host:port (e.g. 127.0.0.1:8080)")
    node.add_argument(
        "--profile",
        choices=["development", "production", "edge"],
        help="timings preset (default: production with a key, development without)",
    )
    node.add_argument("--data-dir", help="persist replicas, peers and identity in this directory")
    node.add_argument(
        "--durability",
        choices=["batch", "always"],
        default="batch",
        help="commit each write before it returns (always) or once per loop turn (batch)",
    )
    node.add_argument(
        "--on-corrupt",
        choices=["fail", "start-empty"],
        default="fail",
        help="a corrupt data file: refuse to start, or move it aside and refill from peers",
    )
    node.add_argument(
        "--demo-faults",
        action="store_true",
        help="let the admin API cut this node off from its peers (/admin/partition; demos)",
    )
    node.set_defaults(run=_node)

    backup = commands.add_parser(
        "backup",
        help="write a consistent backup of every replica (from a running node or a data dir)",
        description=(
            "Back up a running node over its HTTP admin API (--http, --key-file) or a data "
            "dir offline (--data-dir). The file holds every replica with its digest."
        ),
    )
    source = backup.add_mutually_exclusive_group(required=True)
    source.add_argument("--http", help="host:port of a node's HTTP API")
    source.add_argument("--data-dir", help="a node's data directory")
    backup.add_argument("--key-file", help="a key the node holds (for the admin token)")
    backup.add_argument("--out", required=True, help="the backup file to write")
    backup.set_defaults(run=_backup)

    restore = commands.add_parser(
        "restore",
        help="create a node's data dir from a backup",
        description="Create a data dir holding a backup's replicas; start a node on it.",
    )
    restore.add_argument("--in", dest="backup", required=True, help="the backup file")
    restore.add_argument("--data-dir", required=True, help="the data directory to create")
    restore.add_argument("--node-id", help="the id the restored node will use")
    restore.add_argument(
        "--overwrite", action="store_true", help="replace replicas already in the data dir"
    )
    restore.set_defaults(run=_restore)

    keys = commands.add_parser(
        "keys",
        help="rotate cluster keys on running nodes (install, use, remove, list)",
        description=(
            "Talk to the HTTP admin API of one or more nodes. To rotate with no downtime: "
            "install the new key on every node, use it on every node, then remove the old one."
        ),
    )
    keys.add_argument("op", choices=["install", "use", "remove", "list"])
    keys.add_argument("key", nargs="?", help="the base64 key (install, use, remove)")
    keys.add_argument("--http", required=True, help="comma-separated host:port of node HTTP APIs")
    keys.add_argument("--key-file", required=True, help="a key the nodes hold (for the token)")
    keys.set_defaults(run=_keys)

    check = commands.add_parser(
        "check",
        help="review a config and this host like a production-readiness review",
        description=(
            "Validate a config (a TOML file, else the FOUNDATION_* environment) and the "
            "surroundings: the cluster key and its file mode, the bind address, whether the "
            "timers meet failure_detection_goal, the data dir, and whether discovery answers. "
            "Each finding has a severity and a fix. Exit code: 1 if any finding is an error, "
            "2 if the config itself is invalid, else 0."
        ),
    )
    check.add_argument("--config", metavar="FILE", help="TOML config (default: the environment)")
    check.add_argument("--cluster", default="default", help="cluster name (default: default)")
    check.add_argument(
        "--members", type=int, default=16, help="cluster size the timers are judged at (16)"
    )
    check.set_defaults(run=_check)

    load = commands.add_parser(
        "import",
        help="load a JSON dump (or a PySyncObj ReplDict's contents) into a SharedState",
        description=(
            "Start a short-lived node, write every key of a JSON object into the SharedState "
            "NAME in one transaction, wait until the cluster's live peers hold it (or, with "
            "--data-dir and no peer, until it is on disk), then leave. Nothing is written if "
            "any value cannot be stored. Exit code: 0 done, 1 not confirmed, 2 bad input."
        ),
    )
    load.add_argument("file", help="JSON file holding one object: {key: value, ...}")
    load.add_argument("--name", required=True, help="the SharedState to load into")
    load.add_argument("--cluster", default="default", help="cluster name (default: default)")
    load.add_argument("--seeds", default="", help="comma-separated seed addresses host:port")
    load.add_argument("--config", metavar="FILE", help="TOML config (default: the environment)")
    load.add_argument("--key-file", help="file holding the base64 cluster key")
    load.add_argument("--data-dir", help="write into this node data directory as well")
    load.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to find peers and sync (30)"
    )
    load.set_defaults(run=_import)

    status = commands.add_parser(
        "status",
        help="show a running node's view of the cluster (members, replicas, health)",
        description=(
            "Ask a node's HTTP API what it sees: members and their states, replicas with "
            "digests and sizes, health findings. Exit code: 0 if the node answered, 1 if not."
        ),
    )
    status.add_argument(
        "--http", default="127.0.0.1:8080", help="the node's HTTP API (default: 127.0.0.1:8080)"
    )
    status.add_argument("--json", action="store_true", help="print the raw overview as JSON")
    status.set_defaults(run=_status)

    demo = commands.add_parser(
        "demo",
        help="a 3-node cluster on loopback: writes through a partition, a heal, convergence",
        description=(
            "Start three `foundation-p2p node` processes on 127.0.0.1 (mDNS pinned to "
            "loopback), open node a's dashboard, write to a SharedState on each node, cut node "
            "c off, write on both sides, heal, and check that every node holds every write. "
            "Exit code: 0 if every step happened, 1 if not (the reason and the nodes' last log "
            "lines are printed), 130 on Ctrl-C. Every process started is stopped."
        ),
    )
    demo.add_argument(
        "--no-browser", action="store_true", help="print the dashboard URL but do not open it"
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the cluster running afterwards until Ctrl-C"
    )
    demo.set_defaults(run=_demo)
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


def _node(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    from foundation_p2p.config import Config, ConfigError
    from foundation_p2p.node import Node
    from foundation_p2p.runtime.persistence import PersistenceError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    seeds = [seed for seed in args.seeds.split(",") if seed.strip()]
    config = None
    if args.profile == "development":
        config = Config.development()
    elif args.profile == "production":
        config = Config.production()
    elif args.profile == "edge":
        config = Config.edge()
    try:
        if args.config and args.profile:
            raise ConfigError("give --profile or --config (whose profile = ... picks the preset)")
        if args.config:
            config = Config.from_file(args.config)
        node = Node(
            cluster=args.cluster,
            node_id=args.node_id,
            listen=args.listen,
            advertise=args.advertise,
            discovery=args.discovery or ("mdns" if args.mdns else None),
            mdns_interfaces=args.mdns_interface,
            seeds=seeds,
            config=config,
            key_file=args.key_file,
            http=args.http,
            data_dir=args.data_dir,
            durability=args.durability,
            on_corrupt="start_empty" if args.on_corrupt == "start-empty" else "fail",
            fault_injection=args.demo_faults,
        )
    except (ConfigError, ValueError, OSError) as exc:
        print(f"foundation-p2p node: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.getLogger().setLevel(node.config.log_level)  # the profile's verbosity

    async def serve() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        async with node:
            http = f" http={node.http_address}" if node.http_address else ""
            print(
                f"node {node.node_id} cluster={node.cluster} listen={node.address}{http}",
                flush=True,
            )
            await stopping.wait()
            print(f"node {node.node_id} leaving", flush=True)

    try:
        asyncio.run(serve())
    except (OSError, PersistenceError) as exc:
        print(f"foundation-p2p node: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from foundation_p2p.demo import run_demo

    return run_demo(open_browser=not args.no_browser, keep=args.keep)


def _status(args: argparse.Namespace) -> int:
    import json
    import urllib.request

    from foundation_p2p.runtime.dashboard import format_status

    url = f"http://{args.http}/api/overview"
    try:
        with urllib.request.urlopen(url, timeout=5.0) as response:
            overview = json.loads(response.read())
    except (OSError, ValueError) as exc:
        print(f"foundation-p2p status: no answer from {url}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(overview, indent=2) if args.json else format_status(overview))
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    import asyncio

    from foundation_p2p.config import Config, ConfigError
    from foundation_p2p.environment import check_readiness

    try:
        config = Config.from_file(args.config) if args.config else Config.from_env()
        findings = asyncio.run(
            check_readiness(config, cluster=args.cluster, members=max(1, args.members))
        )
    except ConfigError as exc:
        print(f"foundation-p2p check: invalid config: {exc}", file=sys.stderr)
        return EXIT_USAGE
    source = args.config or "the environment"
    print(f"config: {source} (profile {config.profile})")
    for finding in findings:
        print(f"{finding.severity.upper():7} {finding.code}: {finding.message}")
        if finding.fix:
            print(f"        fix: {finding.fix}")
    errors = sum(finding.severity == "error" for finding in findings)
    warnings = sum(finding.severity == "warning" for finding in findings)
    print(f"{errors} error(s), {warnings} warning(s)")
    return EXIT_FAILED if errors else EXIT_OK


def _import(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from foundation_p2p.config import Config, ConfigError
    from foundation_p2p.node import Node
    from foundation_p2p.services.state import check_key, encode_value

    def usage(problem: str) -> int:
        print(f"foundation-p2p import: {problem}", file=sys.stderr)
        return EXIT_USAGE

    try:
        with open(args.file, encoding="utf-8") as stream:
            dump = json.load(stream)
    except OSError as exc:
        return usage(f"cannot read {args.file}: {exc.strerror or exc}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return usage(f"{args.file} is not JSON: {exc}")
    if not isinstance(dump, dict):
        return usage(f"{args.file} holds a JSON {type(dump).__name__}, expected an object")
    try:
        config = Config.from_file(args.config) if args.config else Config.from_env()
        seeds = [seed.strip() for seed in args.seeds.split(",") if seed.strip()]
        node = Node(
            cluster=args.cluster,
            config=config,
            seeds=seeds,
            key_file=args.key_file,
            data_dir=args.data_dir,
        )
    except (ConfigError, ValueError, OSError) as exc:
        return usage(str(exc))
    refused = []
    for key, value in dump.items():
        try:
            check_key(key)
            encode_value(value, config.max_value_bytes)
        except (TypeError, ValueError) as exc:
            refused.append(f"  {key!r}: {exc}")
    if refused:
        return usage("nothing imported; these keys cannot be stored:\n" + "\n".join(refused))

    def alive_peers() -> int:
        return sum(
            status == "alive" for member, status in node.members().items() if member != node.node_id
        )

    async def load() -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + args.timeout
        async with node:
            # --data-dir without --seeds is an offline load: the data dir's node serves it later.
            offline = args.data_dir is not None and not seeds
            while not offline and not alive_peers() and loop.time() < deadline:
                await asyncio.sleep(0.1)
            peers = alive_peers()
            if not peers and args.data_dir is None:
                print(
                    f"foundation-p2p import: no peer of cluster {args.cluster!r} found within "
                    f"{args.timeout:g} s; nothing imported (give --seeds, or --data-dir)",
                    file=sys.stderr,
                )
                return EXIT_FAILED
            state = node.shared_state(args.name)
            state.update(dump)
            if args.data_dir is not None:
                await node.flush_durable()
            if peers:
                await state.synced(max(1.0, deadline - loop.time()))
        where = f"{peers} peer(s)" if peers else f"{args.data_dir}"
        print(f"imported {len(dump)} key(s) into SharedState {args.name!r}; held by {where}")
        return EXIT_OK

    try:
        return asyncio.run(load())
    except TimeoutError as exc:  # ConsistencyTimeout: the write still replicates
        print(f"foundation-p2p import: not confirmed by every peer: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"foundation-p2p import: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _keys(args: argparse.Namespace) -> int:
    import json
    import urllib.error
    import urllib.request

    from transport import derive_token, load_key_file

    if args.op != "list" and not args.key:
        print(f"foundation-p2p keys {args.op}: the key is required", file=sys.stderr)
        return EXIT_USAGE
    token = derive_token(load_key_file(args.key_file), "admin")
    failed = False
    for target in [t.strip() for t in args.http.split(",") if t.strip()]:
        url = f"http://{target}/admin/keys"
        data = None if args.op == "list" else json.dumps({"op": args.op, "key": args.key}).encode()
        request = urllib.request.Request(
            url,
            data=data,
            method="GET" if data is None else "POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5.0) as response:
                print(f"{target}: {response.read().decode()}")
        except urllib.error.HTTPError as exc:
            failed = True
            print(f"{target}: HTTP {exc.code} {exc.read().decode()}", file=sys.stderr)
        except OSError as exc:
            failed = True
            print(f"{target}: {exc}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _backup(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    from foundation_p2p.runtime.persistence import (
        PersistenceError,
        backup_data_dir,
        read_backup,
        write_backup_file,
    )
    from transport import derive_token, load_key_file

    try:
        if args.data_dir:
            info = backup_data_dir(args.data_dir, args.out)
        else:
            if not args.key_file:
                print("foundation-p2p backup: --http needs --key-file", file=sys.stderr)
                return EXIT_USAGE
            token = derive_token(load_key_file(args.key_file), "admin")
            request = urllib.request.Request(
                f"http://{args.http}/admin/backup", headers={"Authorization": f"Bearer {token}"}
            )
            with urllib.request.urlopen(request, timeout=30.0) as response:
                data = response.read()
            read_backup(args.out, data)  # verify before writing
            write_backup_file(args.out, data)
            info = read_backup(args.out)[1]
    except urllib.error.HTTPError as exc:
        print(f"foundation-p2p backup: HTTP {exc.code} {exc.read().decode()}", file=sys.stderr)
        return EXIT_FAILED
    except (OSError, PersistenceError, ValueError) as exc:
        print(f"foundation-p2p backup: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"backup of {info.node_id} ({len(info.replicas)} replicas) written to {args.out}")
    for name, fingerprint in sorted(info.replicas.items()):
        print(f"  {name}  {fingerprint}")
    return EXIT_OK


def _restore(args: argparse.Namespace) -> int:
    from foundation_p2p.runtime.persistence import PersistenceError, restore_backup

    try:
        info = restore_backup(
            args.backup, args.data_dir, node_id=args.node_id, overwrite=args.overwrite
        )
    except (OSError, PersistenceError) as exc:
        print(f"foundation-p2p restore: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"restored {len(info.replicas)} replicas from {args.backup} into {args.data_dir}")
    return EXIT_OK
