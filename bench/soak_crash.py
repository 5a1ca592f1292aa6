"""Crash soak: kill -9 a durable writer 100 times; every acknowledged write must survive.

Run: python -m bench.soak_crash [--cycles 100] [--seed S] [--max-alive 0.3]
     (or python bench/soak_crash.py)

Drives tests/runtime/crash_writer.py: a writer process on one data dir writes keys, each made
durable (`flush_durable()`) before it is printed; it is killed with SIGKILL at a random moment
(mid-stream, or about one time in five during start and restore), restarted on the same data
dir, and what it restores is checked against every key acknowledged so far. Prints the seed,
kills, acknowledged keys, restores checked, durable writes/s while alive, and PASS/FAIL.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import tempfile
from pathlib import Path


def _crash_writer() -> object:
    path = Path(__file__).resolve().parent.parent / "tests" / "runtime" / "crash_writer.py"
    spec = importlib.util.spec_from_file_location("crash_writer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    """Run the soak; exit 0 on PASS."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 32))
    parser.add_argument("--max-alive", type=float, default=0.3, help="longest run before a kill")
    args = parser.parse_args(argv)
    writer = _crash_writer()
    print(f"seed {args.seed}, {args.cycles} kill cycles")
    with tempfile.TemporaryDirectory(prefix="soak-crash-") as tmp:
        result = writer.kill_cycles(  # type: ignore[attr-defined]
            Path(tmp) / "data", args.cycles, args.seed, max_alive=args.max_alive
        )
        size = sum(p.stat().st_size for p in Path(tmp, "data").iterdir() if p.is_file())
    print(f"kills:                 {result.cycles} ({result.killed_before_ready} during start)")
    print(f"acknowledged keys:     {result.acknowledged}")
    print(f"restores checked:      {result.restored_checks}")
    print(f"acknowledged missing:  {len(result.missing)} {result.missing[:10]}")
    print(f"data dir at the end:   {size / 1024:.0f} KiB")
    print(f"wall time:             {result.seconds:.1f} s")
    passed = not result.missing and result.cycles == args.cycles
    print("PASS" if passed else f"FAIL (replay with --seed {args.seed})")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
