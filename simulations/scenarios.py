"""Named fault scenarios: a cluster, an application workload, a fault schedule, and a verdict.

Every scenario follows one script. The cluster boots; from `WRITES_FROM` the workload writes to
three replicas ("visits" PNCounter, "online" AWORSet, "settings" LWWMap) on random live nodes,
on every side of a fault; at `FAULT_AT` the faults start on their schedule; writes stop at the
last heal; the cluster then runs until converged (at most `CONVERGE_TIMEOUT` virtual seconds)
and the checkers of `simulations.invariants` judge the result. The workload draws from its own
RNG seeded by (scenario, seed), so a seed replays exactly: same writes, same faults, same trace.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from crdts import AWORSet, LWWMap, PNCounter
from simulations.cluster import SimCluster, TimelinePoint, WriteRecord
from simulations.invariants import (
    memberships_agree,
    no_lost_writes,
    no_resurrection,
    replicas_equal,
)

TIMELINE_INTERVAL = 0.25
"""Virtual seconds between timeline samples (the report's chart resolution)."""
WRITES_FROM = 1.0
"""The workload starts once the cluster has booted (a 50-node cluster agrees within ~0.3 s)."""
FAULT_AT = 3.0
"""The first fault strikes here, so some writes precede every fault."""
WRITE_PERIOD = 0.25
"""Each writer group makes one write this often while faults are in force."""
CONVERGE_TIMEOUT = 30.0
"""Virtual seconds after the last heal within which the cluster must converge."""
CONVERGE_STEP = 0.05
"""How often convergence is checked: the resolution of the convergence time."""
TAIL = 1.0
"""Virtual seconds run after convergence, to show that it holds."""
MIN_NODES = 3

VISITS, ONLINE, SETTINGS = "visits", "online", "settings"
USERS = 20
SETTING_KEYS = 8


@dataclass(slots=True)
class ScenarioResult:
    """What one scenario run did and how the cluster fared."""

    name: str
    description: str
    nodes: int
    seed: int
    converged: bool
    """Converged within the timeout after the last heal, and still converged at the end."""
    heal_time: float
    """Virtual time of the last heal (or restart, or end of loss)."""
    convergence_time: float | None
    """Virtual seconds from the last heal until converged; None if it never converged."""
    writes: int
    checks: dict[str, list[str]]
    """Checker name -> problems found; an empty list means the property holds."""
    stats: dict[str, Any]
    timeline: list[TimelinePoint]
    markers: list[tuple[float, str]]
    """(virtual time, label) of every fault event."""
    fault_windows: list[tuple[float, float, str]]
    """(start, end, label) of every interval during which a fault was in force."""
    detections: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    """Crashed node -> (first detection, detection by every live node or None), in seconds."""
    trace_digest: str = ""
    virtual_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Converged and every checker found nothing."""
        return self.converged and not any(self.checks.values())

    @property
    def replay(self) -> str:
        """The command that replays this run exactly."""
        return f"foundation-p2p simulate {self.name} --nodes {self.nodes} --seed {self.seed}"


Scenario = Callable[[int, int], ScenarioResult]


class _Run:
    """One scenario in progress: the cluster, the workload and the record of faults."""

    def __init__(self, name: str, description: str, nodes: int, seed: int) -> None:
        if type(nodes) is not int or nodes < MIN_NODES:
            raise ValueError(f"scenario {name!r} needs at least {MIN_NODES} nodes, got {nodes!r}")
        self.name = name
        self.description = description
        self.seed = seed
        self.started = time.perf_counter()
        self.sim = SimCluster(nodes, seed, timeline_interval=TIMELINE_INTERVAL)
        self.rng = random.Random(f"{name}/{seed}")
        self.ids = list(self.sim.nodes)
        self.markers: list[tuple[float, str]] = []
        self.windows: list[tuple[float, float, str]] = []
        self._open: dict[str, tuple[float, str]] = {}
        self.increments: list[tuple[WriteRecord, int]] = []
        self.heal_time = 0.0
        self.detections: dict[str, tuple[float, float | None]] = {}
        for node_id in self.ids:
            self.declare(node_id)

    # --- the fault schedule -------------------------------------------------------------------

    def fault(self, when: float, label: str, action: Callable[[], object], window: str) -> None:
        """At `when`, run `action`, mark it, and open the fault window `window`."""

        def strike() -> None:
            action()
            self.markers.append((self.sim.now, label))
            self._open[window] = (self.sim.now, label)

        self.sim.at(when, strike)

    def heal(self, when: float, label: str, action: Callable[[], object], window: str) -> None:
        """At `when`, run `action`, mark it, and close the fault window `window`."""

        def mend() -> None:
            action()
            self.markers.append((self.sim.now, label))
            start, opened = self._open.pop(window)
            self.windows.append((start, self.sim.now, opened))
            self.heal_time = max(self.heal_time, self.sim.now)

        self.sim.at(when, mend)

    # --- the workload ---------------------------------------------------------------------------

    def write_during(self, start: float, end: float, groups: Sequence[Sequence[str]]) -> None:
        """In every WRITE_PERIOD from `start` until `end`, write once in each group.

        Each write falls at a random instant of its period, as an application's would, and
        not in step with the timeline's samples, which would then always catch a fresh write
        that has not had time to replicate.
        """
        for i in range(math.ceil((end - start) / WRITE_PERIOD)):
            when = start + (i + self.rng.random()) * WRITE_PERIOD
            if when < end:
                self.sim.at(when, partial(self._write_in, groups))

    def _write_in(self, groups: Sequence[Sequence[str]]) -> None:
        for group in groups:
            writers = [n for n in group if self.sim.nodes[n].up]
            if writers:
                self.write(self.rng.choice(writers))

    def declare(self, node_id: str) -> None:
        """Open the workload's replicas on `node_id`, as an application does when it starts.

        (A node that first meets a counter as a peer's delta and only then writes to it loses
        increments today; tests/simulations/test_scenarios.py pins that engine bug apart.)
        """
        node = self.sim.node(node_id)
        node.replica(VISITS, PNCounter)
        node.replica(ONLINE, AWORSet)
        node.replica(SETTINGS, LWWMap)

    def write(self, node_id: str) -> None:
        """One application write on `node_id`: a visit, a user online or gone, or a setting."""
        node = self.sim.node(node_id)
        rng = self.rng
        roll = rng.random()
        if roll < 0.5:
            amount = rng.randint(1, 3)
            node.replica(VISITS, PNCounter).increment(amount)
            self.increments.append((self.sim.writes[-1], amount))
        elif roll < 0.85:
            online = node.replica(ONLINE, AWORSet)
            present = sorted(online.value, key=str)
            if present and roll >= 0.75:
                online.remove(rng.choice(present))
            else:
                online.add(f"user-{rng.randrange(USERS)}")
        else:
            settings = node.replica(SETTINGS, LWWMap)
            key = f"key-{rng.randrange(SETTING_KEYS)}"
            if roll >= 0.97:
                settings.delete(key)
            else:
                settings.set(key, rng.randrange(1000))

    # --- crashes ----------------------------------------------------------------------------------

    def restart(self, node_id: str, keep_state: bool) -> None:
        """Note how fast the crash was detected, restart, and write at once as an app would."""
        seen = self.sim.detections.get(node_id)
        crashed = self.sim.crashed_at.get(node_id)
        if seen and crashed is not None:
            live = [n.node_id for n in self.sim.live_nodes()]
            everyone = max(seen.values()) - crashed if all(n in seen for n in live) else None
            self.detections[node_id] = (min(seen.values()) - crashed, everyone)
        self.sim.restart(node_id, keep_state=keep_state)
        self.declare(node_id)
        self.write(node_id)

    # --- the verdict ----------------------------------------------------------------------------

    def finish(self, last_heal: float) -> ScenarioResult:
        """Run to the last heal (scheduled at `last_heal`), then until converged, and judge."""
        sim = self.sim
        sim.run_for(max(0.0, last_heal - sim.now))
        if self._open:
            raise RuntimeError(f"scenario {self.name!r} left faults in force: {sorted(self._open)}")
        converged_at: float | None = None
        if sim.run_until(lambda s: s.converged(), timeout=CONVERGE_TIMEOUT, step=CONVERGE_STEP):
            converged_at = sim.now
            sim.run_for(TAIL)
        checks = {
            "replicas_equal": replicas_equal(sim),
            "memberships_agree": memberships_agree(sim),
            "no_lost_writes": no_lost_writes(sim),
            "no_resurrection": no_resurrection(sim),
            "counter_exact": self._counter_exact(),
        }
        return ScenarioResult(
            name=self.name,
            description=self.description,
            nodes=len(self.ids),
            seed=self.seed,
            converged=converged_at is not None and sim.converged(),
            heal_time=self.heal_time,
            convergence_time=None if converged_at is None else converged_at - self.heal_time,
            writes=len(sim.writes),
            checks=checks,
            stats=sim.stats(),
            timeline=list(sim.timeline),
            markers=list(self.markers),
            fault_windows=sorted(self.windows),
            detections=dict(self.detections),
            trace_digest=sim.trace_digest(),
            virtual_seconds=sim.now,
            wall_seconds=time.perf_counter() - self.started,
        )

    def _counter_exact(self) -> list[str]:
        """Every live node's "visits" is the sum of the increments (but those lost with a node
        that restarted empty before sending them).

        no_lost_writes cannot see an increment lost to a counter slot that two writers shared
        (the later total merges into the earlier one); the plain sum can.
        """
        expected = sum(amount for record, amount in self.increments if not record.lost)
        problems = []
        for node in self.sim.live_nodes():
            replica = node.engine.replication.replicas.get(VISITS)
            value = replica.value if replica is not None else 0
            if value != expected:
                problems.append(
                    f"{node.node_id}: {VISITS!r} is {value}, the increments sum to {expected}"
                )
        return problems


def _halves(ids: list[str]) -> tuple[list[str], list[str]]:
    middle = (len(ids) + 1) // 2
    return ids[:middle], ids[middle:]


def _span(group: Sequence[str]) -> str:
    return group[0] if len(group) == 1 else f"{group[0]}..{group[-1]}"


# --- the scenarios ----------------------------------------------------------------------------


def partition_heal(nodes: int, seed: int) -> ScenarioResult:
    """Split the cluster roughly in half for 20 s, writing on both sides, then heal."""
    run = _Run("partition-heal", "split roughly in half for 20 s, then heal", nodes, seed)
    left, right = _halves(run.ids)
    end = FAULT_AT + 20.0
    run.fault(
        FAULT_AT,
        f"partition {_span(left)} | {_span(right)}",
        lambda: run.sim.partition(left, right),
        "partition",
    )
    run.heal(end, "heal", run.sim.heal, "partition")
    run.write_during(WRITES_FROM, end, [left, right])
    return run.finish(end)


def flapping_link(nodes: int, seed: int) -> ScenarioResult:
    """Cut the link between two nodes and restore it every few seconds for 30 s."""
    run = _Run("flapping-link", "one link cut and restored every 1-4 s for 30 s", nodes, seed)
    a, b = run.rng.sample(run.ids, 2)
    rest = [n for n in run.ids if n not in (a, b)]

    def cut() -> None:
        run.sim.partition_oneway([a], [b])
        run.sim.partition_oneway([b], [a])

    when, end = FAULT_AT, FAULT_AT + 30.0
    restore = when
    while when < end:
        restore = min(end, when + run.rng.uniform(1.0, 4.0))
        run.fault(when, f"cut {a}-{b}", cut, "link")
        run.heal(restore, f"restore {a}-{b}", run.sim.heal, "link")
        when = restore + run.rng.uniform(1.0, 4.0)
    run.write_during(WRITES_FROM, restore, [[a], [b], rest])
    return run.finish(restore)


def _rolling_restart(name: str, nodes: int, seed: int, keep_state: bool) -> ScenarioResult:
    kind = "with its replicas (persisted)" if keep_state else "empty (no persistence)"
    run = _Run(name, f"crash each node in turn and restart it {kind}", nodes, seed)
    slot = min(8.0, 40.0 / nodes)  # a new node goes down every `slot` s: all within 40 s
    # Down 6 s: at 50 nodes ~7 are down at once, like a rollout with max-unavailable 15%.
    down = 6.0
    last = FAULT_AT
    for i, node_id in enumerate(run.ids):
        crash_at = FAULT_AT + i * slot
        run.fault(crash_at, f"crash {node_id}", partial(run.sim.crash, node_id), node_id)
        last = crash_at + down
        run.heal(last, f"restart {node_id}", partial(run.restart, node_id, keep_state), node_id)
    run.write_during(WRITES_FROM, last, [run.ids])
    return run.finish(last)


def rolling_restart(nodes: int, seed: int) -> ScenarioResult:
    """Crash each node in turn for 6 s and restart it with its replicas, as if persisted."""
    return _rolling_restart("rolling-restart", nodes, seed, keep_state=True)


def rolling_restart_amnesia(nodes: int, seed: int) -> ScenarioResult:
    """Crash each node in turn for 6 s and restart it empty; it writes at once on startup."""
    return _rolling_restart("rolling-restart-amnesia", nodes, seed, keep_state=False)


def asymmetric_partition(nodes: int, seed: int) -> ScenarioResult:
    """For 20 s a third of the nodes can hear the rest but cannot be heard; then heal."""
    run = _Run(
        "asymmetric-partition",
        "a third of the nodes cannot send to the rest (one-way) for 20 s",
        nodes,
        seed,
    )
    count = max(1, nodes // 3)
    minority, majority = run.ids[-count:], run.ids[:-count]
    end = FAULT_AT + 20.0
    run.fault(
        FAULT_AT,
        f"one-way cut {_span(minority)} -> {_span(majority)}",
        lambda: run.sim.partition_oneway(minority, majority),
        "oneway",
    )
    run.heal(end, "heal", run.sim.heal, "oneway")
    run.write_during(WRITES_FROM, end, [minority, majority])
    return run.finish(end)


def minority_isolation(nodes: int, seed: int) -> ScenarioResult:
    """Isolate one node (two from 10 nodes up), each on its own, for 20 s; then heal."""
    run = _Run("minority-isolation", "1 node (2 from 10 nodes up) isolated for 20 s", nodes, seed)
    isolated = sorted(run.rng.sample(run.ids, 1 if nodes < 10 else 2), key=run.ids.index)
    rest = [n for n in run.ids if n not in isolated]
    end = FAULT_AT + 20.0
    run.fault(
        FAULT_AT,
        f"isolate {', '.join(isolated)}",
        lambda: run.sim.partition(*([n] for n in isolated)),
        "isolation",
    )
    run.heal(end, "heal", run.sim.heal, "isolation")
    run.write_during(WRITES_FROM, end, [*([n] for n in isolated), rest])
    return run.finish(end)


def loss_10(nodes: int, seed: int) -> ScenarioResult:
    """10% packet loss on every link for 30 s while writing; then a clean network."""
    run = _Run("loss-10", "10% loss on every link for 30 s", nodes, seed)
    end = FAULT_AT + 30.0
    run.fault(FAULT_AT, "loss 10%", lambda: run.sim.set_loss(0.1), "loss")
    run.heal(end, "loss 0%", lambda: run.sim.set_loss(0.0), "loss")
    run.write_during(WRITES_FROM, end, [run.ids])
    return run.finish(end)


SCENARIOS: dict[str, Scenario] = {
    "partition-heal": partition_heal,
    "flapping-link": flapping_link,
    "rolling-restart": rolling_restart,
    "rolling-restart-amnesia": rolling_restart_amnesia,
    "asymmetric-partition": asymmetric_partition,
    "minority-isolation": minority_isolation,
    "loss-10": loss_10,
}


def run_scenario(name: str, nodes: int, seed: int) -> ScenarioResult:
    """Run the scenario called `name`; ValueError naming the valid ones if there is none."""
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise ValueError(f"unknown scenario {name!r}; valid scenarios: {', '.join(SCENARIOS)}")
    return scenario(nodes, seed)
