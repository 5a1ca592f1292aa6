"""Checkers run against a SimCluster: convergence, membership agreement, no lost writes,
no resurrection. Each returns a list of problems (empty when the property holds)."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from crdts import AWORSet, LWWEntry, LWWMap
from crdts.base import key_from_wire
from crdts.dots import DotContext

if TYPE_CHECKING:
    from simulations.cluster import SimCluster


def replicas_equal(sim: SimCluster) -> list[str]:
    """Every live node holds every replica, equal to the first live node's."""
    live = sim.live_nodes()
    if not live:
        return []
    names = set().union(*(n.engine.replication.replicas for n in live))
    problems = []
    reference = live[0]
    for name in sorted(names):
        base = reference.engine.replication.replicas.get(name)
        for node in live:
            replica = node.engine.replication.replicas.get(name)
            if replica is None:
                problems.append(f"{node.node_id} lacks replica {name!r}")
            elif base is None or replica != base:
                problems.append(f"{node.node_id} differs from {reference.node_id} on {name!r}")
    return problems


def _expected(sim: SimCluster, node_id: str) -> bool:
    return sim.nodes[node_id].up


def memberships_agree(sim: SimCluster) -> list[str]:
    """Each live node sees every live node alive and every stopped node not alive."""
    problems = []
    for observer in sim.live_nodes():
        view = observer.engine.members()
        for node_id in sim.nodes:
            status = view.get(node_id)
            if _expected(sim, node_id):
                if status != "alive":
                    problems.append(f"{observer.node_id} sees live {node_id} as {status}")
            elif status in ("alive", "suspect"):
                problems.append(f"{observer.node_id} sees stopped {node_id} as {status}")
    return problems


def agreement_fraction(sim: SimCluster) -> float:
    """The share of (observer, node) pairs whose status matches reality."""
    live = sim.live_nodes()
    if not live:
        return 1.0
    good = total = 0
    for observer in live:
        view = observer.engine.members()
        for node_id in sim.nodes:
            total += 1
            status = view.get(node_id)
            good += (
                (status == "alive")
                if _expected(sim, node_id)
                else (status not in ("alive", "suspect"))
            )
    return good / total


def equality_fraction(sim: SimCluster) -> float:
    """The share of live nodes whose replicas all equal the most common state."""
    live = sim.live_nodes()
    if not live:
        return 1.0
    groups: list[tuple[dict[str, Any], int]] = []
    for node in live:
        replicas = node.engine.replication.replicas
        for i, (state, count) in enumerate(groups):
            if state.keys() == replicas.keys() and all(state[k] == replicas[k] for k in state):
                groups[i] = (state, count + 1)
                break
        else:
            groups.append((replicas, 1))
    return max(count for _, count in groups) / len(live)


def no_lost_writes(sim: SimCluster) -> list[str]:
    """Every write (except those lost with a node that restarted empty) is in every live node."""
    problems = []
    for node in sim.live_nodes():
        replicas = node.engine.replication.replicas
        for write in sim.writes:
            if write.lost:
                continue
            final = replicas.get(write.replica)
            if final is None:
                problems.append(
                    f"{node.node_id} lacks {write.replica!r} written at {write.time:.3f}"
                )
                continue
            probe = final.copy()
            probe.merge(write.delta)
            if probe != final:
                problems.append(
                    f"{node.node_id}: write to {write.replica!r} by {write.node} at "
                    f"{write.time:.3f} is missing"
                )
    return problems


def no_resurrection(sim: SimCluster) -> list[str]:
    """Removed set elements and deleted keys stay gone, per the types' own semantics.

    AWORSet: an element is present iff one of its add dots was never retired by a write that
    had seen it. LWWMap: a key is present iff its latest write (timestamp, writer) is not a
    delete. Both are computed from the write log alone and compared with every live node.
    """
    problems = []
    by_replica: dict[str, list[Any]] = defaultdict(list)
    for write in sim.writes:
        if not write.lost:
            by_replica[write.replica].append(write.delta)
    for name, deltas in by_replica.items():
        expected: Any
        if isinstance(deltas[0], AWORSet):
            expected = _aworset_model(deltas)
        elif isinstance(deltas[0], LWWMap):
            expected = _lwwmap_model(deltas)
        else:
            continue
        for node in sim.live_nodes():
            replica = node.engine.replication.replicas.get(name)
            value = replica.value if replica is not None else None
            if value != expected:
                problems.append(
                    f"{node.node_id}: {name!r} is {value!r}, the writes say {expected!r}"
                )
    return problems


def _aworset_model(deltas: list[AWORSet]) -> frozenset[Any]:
    adds: dict[Any, set[tuple[str, int]]] = defaultdict(set)
    retired = DotContext()
    for delta in deltas:
        _, _, _, context_wire, flat = delta.to_wire()
        own = set()
        for i in range(0, len(flat), 3):
            dot = (flat[i], flat[i + 1])
            own.add(dot)
            adds[key_from_wire(flat[i + 2])].add(dot)
        retired.update(DotContext.from_wire(context_wire).without(own))
    return frozenset(e for e, dots in adds.items() if any(d not in retired for d in dots))


def _lwwmap_model(deltas: list[LWWMap]) -> dict[Any, Any]:
    latest: dict[Any, LWWEntry] = {}
    for delta in deltas:
        for key, entry in delta.entries():
            current = latest.get(key)
            if current is None or entry.beats(current):
                latest[key] = entry
    return {key: e.value for key, e in latest.items() if not e.deleted}
