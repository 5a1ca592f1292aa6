"""Three replicas write while cut off from each other, then exchange deltas in a scrambled order.

Run: python examples/crdt_replicas.py [--seed N]

Each replica keeps a visit counter, a set of online devices and a map of settings. The deltas
they produce are shuffled, duplicated and delivered in any order; all three end equal, and
every write is accounted for. Then one replica that missed everything catches up from a
digest exchange (anti-entropy) instead of from the deltas.
"""

from __future__ import annotations

import argparse
import random

from crdts import HLC, AWORSet, LWWMap, PNCounter


def main() -> int:
    """Run the scenario and print what each replica ends with; exit 1 if they disagree."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7, help="shuffle seed (default 7)")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    names = ["gateway-a", "gateway-b", "gateway-c"]
    visits = {n: PNCounter(replica=n) for n in names}
    online = {n: AWORSet(replica=n) for n in names}
    settings = {n: LWWMap(replica=n) for n in names}
    clocks = {n: HLC(node=n) for n in names}
    deltas: list[tuple[str, object]] = []
    total = 0

    print("1. Partitioned: each gateway writes on its own")
    wall_ms = 1_700_000_000_000
    for step in range(30):
        name = rng.choice(names)
        wall_ms += rng.randint(0, 5)
        ts = clocks[name].now(wall_ms)
        action = rng.choice(["visit", "online", "offline", "setting"])
        if action == "visit":
            amount = rng.randint(1, 3)
            total += amount
            deltas.append(("visits", visits[name].increment(amount)))
        elif action == "online":
            deltas.append(("online", online[name].add(f"sensor-{rng.randint(1, 5)}")))
        elif action == "offline":
            deltas.append(("online", online[name].remove(f"sensor-{rng.randint(1, 5)}")))
        else:
            deltas.append(("settings", settings[name].set("mode", f"{name}#{step}", ts)))
    for n in names:
        print(f"   {n}: visits={visits[n].value:3d} online={sorted(online[n].value)}")

    print(f"2. Heal: {len(deltas)} deltas delivered shuffled, some twice")
    delivery = deltas + rng.sample(deltas, len(deltas) // 3)
    rng.shuffle(delivery)
    replicas = {"visits": visits, "online": online, "settings": settings}
    for kind, delta in delivery:
        for n in names:
            replicas[kind][n].merge(delta)  # type: ignore[attr-defined]

    agreed = all(replicas[kind][n] == replicas[kind][names[0]] for kind in replicas for n in names)
    for n in names:
        print(
            f"   {n}: visits={visits[n].value:3d} online={sorted(online[n].value)} "
            f"mode={settings[n].get('mode')!r}"
        )
    print(f"   every visit counted: {visits[names[0]].value == total} (expected {total})")

    print("3. A new gateway catches up by anti-entropy: digest -> delta_since -> merge")
    late = PNCounter(replica="gateway-d")
    delta = visits[names[0]].delta_since(late.digest())
    late.merge(delta)
    print(f"   gateway-d: visits={late.value} (delta carried {len(delta.digest()[0])} totals)")

    converged = agreed and late.value == total and visits[names[0]].value == total
    print("converged" if converged else "DIVERGED")
    return 0 if converged else 1


if __name__ == "__main__":
    raise SystemExit(main())
