"""Crash soak: kill -9 a durable writer 100 times; every acknowledged write must survive.

Run: python -m bench.soak_crash [--cycles 100] [--seed S] [--max-alive 0.3]
     (or python bench/soak_crash.py)

Drives tests/runtime/crash_writer.py: a writer process on one data dir writes keys, each made
durable (`flush_durable()`) before it is printed; it is killed with SIGKILL at a random moment
(mid-stream, or about one time in five during start and restore), restarted on the same data
dir, and what it restores is checked against every key acknowledged so far. Prints the seed,
kills, acknowledged keys, restores checked, and PASS/FAIL.

First, in this process (skip with --writes 0): durable writes/s of a one-node LWWMap replica
with a data dir — batch durability with a flush after every write, with one flush per 100
writes, with one write per loop turn and a flush at the end, and durability="always" — and
the time a restart takes to load what they wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import random
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder heads sys.path and its crdts.py would shadow the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]


def _crash_writer() -> object:
    path = Path(__file__).resolve().parent.parent / "tests" / "runtime" / "crash_writer.py"
    spec = importlib.util.spec_from_file_location("crash_writer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def _throughput(data_dir: Path, writes: int, durability: str, every: int) -> float:
    from crdts import LWWMap
    from foundation_p2p.node import Node

    node = Node(cluster="bench", data_dir=data_dir, durability=durability, discovery=None)  # type: ignore[arg-type]
    await node.start()
    try:
        replica = node.replica("state/bench", LWWMap)
        began = time.perf_counter()
        for n in range(writes):
            replica.set(f"k{n}", n)
            if every == 0:
                await asyncio.sleep(
                    0
                )  # one write per loop turn, as an application serving requests
            elif n % every == every - 1:
                await node.flush_durable()
        await node.flush_durable()
        return writes / (time.perf_counter() - began)
    finally:
        await node.stop()


async def _restart_seconds(data_dir: Path) -> tuple[float, int]:
    from crdts import LWWMap
    from foundation_p2p.node import Node

    began = time.perf_counter()
    node = Node(cluster="bench", data_dir=data_dir, discovery=None)
    await node.start()
    seconds = time.perf_counter() - began
    keys = len(node.replica("state/bench", LWWMap).value)
    await node.stop()
    return seconds, keys


def measure(writes: int, tmp: Path) -> None:
    """Print durable write rates and restart time."""
    print(f"durable writes, one node, {writes} LWWMap sets each:")
    cases = [("batch, flush every write", "batch", 1), ("batch, flush per 100", "batch", 100)]
    cases.append(("batch, a write per turn", "batch", 0))
    cases.append(("always", "always", 1))
    for label, durability, every in cases:
        data_dir = tmp / label.replace(" ", "-").replace(",", "")
        rate = asyncio.run(_throughput(data_dir, writes, durability, every))
        print(f"  {label:26} {rate:9.0f} writes/s")
    seconds, keys = asyncio.run(_restart_seconds(data_dir))
    print(f"  restart (start to serving) {seconds * 1000:7.0f} ms with {keys} keys")


def main(argv: list[str] | None = None) -> int:
    """Run the soak; exit 0 on PASS."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 32))
    parser.add_argument("--max-alive", type=float, default=0.3, help="longest run before a kill")
    parser.add_argument("--writes", type=int, default=2000, help="writes per throughput case")
    args = parser.parse_args(argv)
    if args.writes:
        with tempfile.TemporaryDirectory(prefix="bench-durable-") as tmp:
            measure(args.writes, Path(tmp))
    writer = _crash_writer()
    print(f"seed {args.seed}, {args.cycles} kill cycles")
    with tempfile.TemporaryDirectory(prefix="soak-crash-") as tmp:
        result = writer.kill_cycles(  # type: ignore[attr-defined]
            Path(tmp) / "data", args.cycles, args.seed, max_alive=args.max_alive
        )
        size = sum(p.stat().st_size for p in Path(tmp, "data").iterdir() if p.is_file())
    print(f"kills:                 {result.cycles} ({result.killed_before_ready} during start)")
    print(f"acknowledged keys:     {result.acknowledged} (through {result.api})")
    print(f"restores checked:      {result.restored_checks}")
    print(f"acknowledged missing:  {len(result.missing)} {result.missing[:10]}")
    print(f"data dir at the end:   {size / 1024:.0f} KiB")
    print(f"wall time:             {result.seconds:.1f} s")
    passed = not result.missing and result.cycles == args.cycles
    print("PASS" if passed else f"FAIL (replay with --seed {args.seed})")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
