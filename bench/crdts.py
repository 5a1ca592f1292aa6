"""CRDT micro-benchmarks: mutator ops/s, merges/s, bytes per delta, and YDoc against raw pycrdt.

Run: python -m bench.crdts [--quick]   (or python bench/crdts.py)

Figures are wall-clock on whatever machine runs this; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Run as a script, this file's folder heads sys.path and its name would shadow the crdts package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import msgpack  # noqa: E402
from pycrdt import Doc, Map  # noqa: E402

from crdts import (  # noqa: E402
    HLC,
    AWORSet,
    GCounter,
    LWWMap,
    LWWRegister,
    MemberTable,
    MVRegister,
    ORMap,
    PNCounter,
    YDoc,
)


def rate(n: int, run: Callable[[int], object]) -> float:
    """Operations per second of `run(i)` for i in range(n) (best of three passes)."""
    best = float("inf")
    for _ in range(3):
        gc.collect()
        start = time.perf_counter()
        for i in range(n):
            run(i)
        best = min(best, time.perf_counter() - start)
    return n / best


def wire_bytes(delta: Any) -> int:
    """Size of a delta on the wire (msgpack of to_wire, or raw update bytes for YDoc)."""
    if isinstance(delta, bytes):
        return len(delta)
    return len(msgpack.packb(delta.to_wire()))


class Case:
    """One mutator to measure: how to make a fresh replica and how to mutate it at step i."""

    def __init__(self, name: str, make: Callable[[str], Any], mutate: Callable[[Any, int], Any]):
        self.name, self.make, self.mutate = name, make, mutate


def cases() -> list[Case]:
    """Every public mutator, on realistic small keys and values."""
    clocks: dict[str, HLC] = {}

    def ts(replica: str, i: int) -> Any:
        clock = clocks.setdefault(replica, HLC(node=replica))
        return clock.now(1_700_000_000_000 + i)

    roots: dict[int, Map] = {}

    def ydoc_set(doc: YDoc, i: int) -> bytes:
        root = roots.get(id(doc))
        if root is None:
            root = roots[id(doc)] = doc.get("m", Map)
        return doc.transact(lambda _: root.__setitem__(f"k{i % 1000}", i))

    return [
        Case("GCounter.increment", GCounter, lambda c, i: c.increment(1)),
        Case("PNCounter.increment", PNCounter, lambda c, i: c.increment(1)),
        Case("PNCounter.decrement", PNCounter, lambda c, i: c.decrement(1)),
        Case("LWWRegister.set", LWWRegister, lambda r, i: r.set(i, ts(r.replica, i))),
        Case("MVRegister.set", MVRegister, lambda r, i: r.set(i)),
        Case("AWORSet.add", AWORSet, lambda s, i: s.add(f"e{i % 1000}")),
        Case("AWORSet.remove", AWORSet, lambda s, i: (s.add(i % 1000), s.remove(i % 1000))[1]),
        Case("LWWMap.set", LWWMap, lambda m, i: m.set(f"k{i % 1000}", i, ts(m.replica, i))),
        Case("LWWMap.delete", LWWMap, lambda m, i: m.delete(f"k{i % 1000}", ts(m.replica, i))),
        Case(
            "ORMap[PNCounter].update",
            lambda r: ORMap(replica=r, value_type=PNCounter),
            lambda m, i: m.update(f"k{i % 100}", lambda v: v.increment(1)),
        ),
        Case(
            "MemberTable.alive",
            MemberTable,
            lambda t, i: t.alive(f"n{i % 100}", i, "10.0.0.1:7946"),
        ),
        Case("YDoc map set", YDoc, ydoc_set),
    ]


def measure(case: Case, n: int) -> tuple[float, float, float]:
    """(mutator ops/s, merges/s of its deltas into another replica, mean bytes per delta)."""
    writer = case.make("writer")
    ops = rate(n, lambda i: case.mutate(writer, i))
    source = case.make("source")
    deltas = [case.mutate(source, i) for i in range(n)]
    size = sum(wire_bytes(d) for d in deltas[: min(n, 2000)]) / min(n, 2000)
    replicas = [case.make("reader") for _ in range(3)]
    passes = iter(replicas)

    def merge_all(_: int) -> None:
        target = next(passes)
        for delta in deltas:
            target.merge(delta)

    merges = rate(1, merge_all) * n
    return ops, merges, size


def raw_pycrdt_sets(n: int) -> float:
    """Raw pycrdt: one transaction per map set, the same work as 'YDoc map set'."""
    doc: Doc[Any] = Doc()
    root = doc.get("m", type=Map)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))

    def run(i: int) -> None:
        with doc.transaction():
            root[f"k{i % 1000}"] = i

    return rate(n, run)


def main(argv: list[str] | None = None) -> int:
    """Print the benchmark table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few iterations (a smoke run)")
    args = parser.parse_args(argv)
    n = 500 if args.quick else 20_000

    print(f"# CRDT benchmark (n={n} per row, best of 3, Python {sys.version.split()[0]})\n")
    print("| operation | mutator ops/s | merges/s | bytes/delta |")
    print("|---|---:|---:|---:|")
    results: dict[str, tuple[float, float, float]] = {}
    for case in cases():
        results[case.name] = measure(case, n)
        ops, merges, size = results[case.name]
        print(f"| {case.name} | {ops:,.0f} | {merges:,.0f} | {size:.1f} |")

    raw = raw_pycrdt_sets(n)
    ours = results["YDoc map set"][0]
    print(f"| raw pycrdt map set (same work) | {raw:,.0f} | | |")
    print(f"\nYDoc / raw pycrdt map-set throughput: {ours / raw:.2f}x")

    size = 10_000 if not args.quick else 500
    big = AWORSet(replica="a")
    for i in range(size):
        big.add(f"e{i}")
    peer = big.copy()
    big.add("new")
    start = time.perf_counter()
    delta = big.delta_since(peer.digest())
    elapsed = time.perf_counter() - start
    print(
        f"AWORSet of {size:,} elements, 1 new: delta_since {elapsed * 1e3:.2f} ms, "
        f"delta {wire_bytes(delta)} bytes, full state {wire_bytes(big):,} bytes"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
