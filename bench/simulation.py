"""Simulator benchmarks: write propagation, failure detection, simulator speed, big heals.

Run: python -m bench.simulation [--quick] [--speed N] [--unit-costs N]

All times are virtual seconds of the simulated cluster (production timings: probe 1 s,
anti-entropy 1 s), except the wall-clock speed row. Each section prints the command-line
parameters it used so a figure can be reproduced exactly.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from crdts import LWWMap, PNCounter  # noqa: E402
from foundation_p2p.config import Config  # noqa: E402
from foundation_p2p.engine import Engine  # noqa: E402
from foundation_p2p.engine.messages import Gossip, Message, Rumour, SyncDelta  # noqa: E402
from simulations import SimCluster  # noqa: E402
from simulations.network import Link  # noqa: E402


def propagation(nodes: int, seed: int = 1) -> tuple[float, int, float]:
    """(virtual s until every node has one write, push hops of the deepest node, share by push)."""
    sim = SimCluster(nodes=nodes, seed=seed, bootstrap="formed", decode=nodes < 500)
    sim.run_for(2.0)
    depth: dict[str, int] = {}
    by_push: set[str] = set()

    def watch(now: float, src: str, dst: str, message: Message) -> None:
        if isinstance(message, SyncDelta) and message.deltas:
            if message.origin and dst not in depth:
                depth[dst] = depth.get(src, 0) + 1
                by_push.add(dst)
            depth.setdefault(dst, depth.get(src, 0) + 1)

    sim.on_deliver = watch
    writer = sim.node("n0")
    depth["n0"] = 0
    start = sim.now
    writer.replica("hits", PNCounter).increment(1)

    def everywhere(s: SimCluster) -> bool:
        return all("hits" in n.engine.replication.replicas for n in s.live_nodes())

    sim.run_until(everywhere, timeout=60.0, step=0.01)
    return sim.now - start, max(depth.values()), len(by_push) / (nodes - 1)


def detection(nodes: int, seed: int = 1) -> tuple[float, float]:
    """(virtual s from a crash to the first MemberDown, to every live node's MemberDown)."""
    sim = SimCluster(nodes=nodes, seed=seed, bootstrap="formed")
    sim.run_for(5.0)
    sim.crash("n1")
    sim.run_until(lambda s: s.stats()["detection"].get("n1", {}).get("all") is not None, 120.0)
    found = sim.stats()["detection"].get("n1", {})
    return found.get("first", math.nan), found.get("all") or math.nan


def false_positives(nodes: int, seconds: float, loss: float, seed: int = 1) -> tuple[int, int]:
    """(false suspicions, false deaths) of live nodes over `seconds` with `loss` on every link."""
    sim = SimCluster(nodes=nodes, seed=seed, bootstrap="formed", link=Link(loss=loss))
    sim.run_for(seconds)
    stats = sim.stats()
    return stats["false_suspicions"], stats["false_downs"]


def speed(nodes: int, seed: int = 1) -> tuple[float, float, bool, dict[str, float], dict[str, int]]:
    """(wall s, virtual s per wall s, converged, wall s per phase, messages sent per phase)
    for 60 virtual s: 10 steady, 30 partitioned into halves, 20 healed (the setup of a formed
    cluster included)."""
    start = time.perf_counter()
    sim = SimCluster(nodes=nodes, seed=seed, bootstrap="formed", decode=False, record_events=False)
    ids = list(sim.nodes)
    marks = [time.perf_counter()]
    sent = [0]

    def phase(seconds: float) -> None:
        sim.run_for(seconds)
        marks.append(time.perf_counter())
        sent.append(sim.stats()["messages"])

    phase(10.0)
    sim.partition(ids[: nodes // 2], ids[nodes // 2 :])
    phase(30.0)
    sim.heal()
    phase(20.0)
    wall = marks[-1] - start
    names = ("setup", "steady 10 s", "split 30 s", "healed 20 s")
    phases = {
        name: end - begin
        for name, begin, end in zip(names, [start, *marks[:-1]], marks, strict=True)
    }
    messages = {name: sent[i] - sent[i - 1] for i, name in enumerate(names[1:], start=1)}
    return wall, 60.0 / wall, sim.converged(), phases, messages


def unit_costs(members: int = 1000, repeats: int = 5) -> dict[str, float]:
    """Microseconds per unit of the work a split and heal is made of, for one engine that knows
    `members` members (best of `repeats`): receiving news that changes a member's status (half
    of the members each), a message of 16 rumours it already knows, taking a rumour to send."""
    others = [f"n{i}" for i in range(members // 2, members)]
    steps = {
        "suspicion": [Rumour(n, 0, "suspect", n, {}, "n1") for n in others],
        "confirmation": [Rumour(n, 0, "suspect", n, {}, "n2") for n in others],
        "death": [Rumour(n, 0, "dead", n) for n in others],
        "refutation (alive again)": [Rumour(n, 1, "alive", n) for n in others],
    }
    known = [  # whole messages of 16, from the news of the last step
        tuple(Rumour(n, 1, "alive", n) for n in others[i : i + 16])
        for i in range(0, len(others) - 15, 16)
    ]
    best: dict[str, float] = {}

    def note(name: str, began: float, count: int) -> None:
        took = (time.perf_counter() - began) / count * 1e6
        best[name] = min(best.get(name, math.inf), took)

    for _ in range(repeats):
        engine = Engine("n0", Config.simulation(), address="n0")
        engine.membership.restore(0.0, {f"n{i}": f"n{i}" for i in range(members)})
        engine.tick(0.0)
        for name, news in steps.items():
            began = time.perf_counter()
            for rumour in news:
                engine.receive(1.0, "n1", Gossip((rumour,)))
            note(f"receive news: {name}", began, len(news))
        if known:
            began = time.perf_counter()
            for message in known:
                engine.receive(1.0, "n1", Gossip(message))
            note("receive 16 known rumours (per message)", began, len(known))
        membership, taken = engine.membership, 0
        began = time.perf_counter()
        while len(membership.rumours) and taken < 100_000:
            taken += len(membership.take_rumours())
        note("take a rumour to send", began, max(1, taken))
    return best


def big_heal(keys: int, nodes: int = 6, seed: int = 1) -> tuple[float, int, bool]:
    """(virtual s to converge, bytes sent after the heal) for `keys` divergent keys per side."""
    sim = SimCluster(nodes=nodes, seed=seed, bootstrap="formed", record_writes=False)
    ids = list(sim.nodes)
    sim.run_for(3.0)
    left, right = ids[: nodes // 2], ids[nodes // 2 :]
    sim.partition(left, right)
    sim.run_for(1.0)
    for side, writer in (("L", left[0]), ("R", right[0])):
        config = sim.node(writer).replica("config", LWWMap)
        for i in range(keys):
            config.set(f"{side}-{i}", i)
    sim.run_for(5.0)
    before = sim.stats()["bytes"]
    healed_at = sim.now
    sim.heal()
    done = sim.run_until(lambda s: s.converged(), timeout=600.0, step=0.5)
    return sim.now - healed_at, sim.stats()["bytes"] - before, done


def print_speed(nodes: int) -> None:
    """Print the simulator speed row for `nodes` nodes."""
    print(f"\n## Simulator speed ({nodes} nodes, 60 virtual s with a partition and a heal)\n")
    wall, ratio, converged, phases, messages = speed(nodes)
    print(f"wall {wall:.1f} s, {ratio:.2f} virtual s per wall s, converged at the end: {converged}")
    print("phases (wall s): " + ", ".join(f"{name} {s:.1f}" for name, s in phases.items()))
    print("messages sent: " + ", ".join(f"{name} {n:,}" for name, n in messages.items()))
    print("goal: 60 virtual s of 1,000 nodes in <= 60 s wall")


def main(argv: list[str] | None = None) -> int:
    """Print every table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument(
        "--speed", type=int, metavar="N", help="only the simulator speed row, with N nodes"
    )
    parser.add_argument(
        "--unit-costs",
        type=int,
        metavar="N",
        help="only the engine's unit costs, for a node that knows N members",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    if args.speed:
        print_speed(args.speed)
        return 0
    if args.unit_costs:
        print(f"## Engine unit costs (one engine, {args.unit_costs} members, best of 5)\n")
        print("| unit | us |")
        print("|---|---:|")
        for name, micros in unit_costs(args.unit_costs).items():
            print(f"| {name} | {micros:.2f} |")
        return 0

    print("## Write propagation (one write, formed cluster, production timings)\n")
    print("| nodes | virtual s to all | hops to the last node | log2(N) | reached by push alone |")
    print("|---:|---:|---:|---:|---:|")
    for n in (10, 50) if quick else (10, 100, 1000):
        seconds, hops, pushed = propagation(n)
        print(f"| {n} | {seconds:.3f} | {hops} | {math.log2(n):.1f} | {pushed:.0%} |")

    print("\n## Failure detection (crash one node; suspicion per Lifeguard)\n")
    print("| nodes | first MemberDown (s) | all live nodes (s) |")
    print("|---:|---:|---:|")
    for n in (5, 15) if quick else (5, 15, 100):
        first, every = detection(n)
        print(f"| {n} | {first:.2f} | {every:.2f} |")

    seconds, loss = (60.0, 0.05) if quick else (600.0, 0.05)
    print(f"\n## False positives ({seconds:.0f} virtual s, {loss:.0%} loss on every link)\n")
    print("| nodes | false suspicions | false deaths |")
    print("|---:|---:|---:|")
    for n in (5, 15) if quick else (5, 15, 100):
        suspicions, deaths = false_positives(n, seconds, loss)
        print(f"| {n} | {suspicions} | {deaths} |")

    print_speed(100 if quick else 1000)

    keys = 1000 if quick else 10_000
    print(f"\n## Heal of {keys:,} divergent keys per side (6 nodes, 3 | 3)\n")
    seconds, sent, converged = big_heal(keys)
    print(f"converged: {converged}, {seconds:.1f} virtual s, {sent / 1e6:.2f} MB sent after heal")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
