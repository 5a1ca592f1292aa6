"""Fault schedules: timed partitions, one-way cuts, loss, crashes and restarts for a SimCluster.

A `FaultSchedule` is plain data (a sorted tuple of `FaultEvent`), so a failing schedule prints
as something a person can read and paste back into a test. `fault_schedules()` is a Hypothesis
strategy for valid schedules; Hypothesis is imported only when it is called, so this module
works without the `test` extra.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Literal, get_args
from weakref import WeakKeyDictionary

if TYPE_CHECKING:
    from hypothesis.strategies import DrawFn, SearchStrategy

    from simulations.cluster import SimCluster

FaultKind = Literal["partition", "partition_oneway", "loss", "crash", "restart", "heal"]
# Simplest first: Hypothesis shrinks a drawn kind towards the start of this tuple.
KINDS: tuple[FaultKind, ...] = ("heal", "loss", "partition", "partition_oneway", "crash", "restart")
MAX_LOSS = 0.3
_STEP = 0.1  # seconds between convergence checks in settle(), as in SimCluster.run_until

Groups = tuple[tuple[str, ...], ...]

# When each schedule applied to a cluster ends (absolute virtual time), for settle().
_APPLIED: WeakKeyDictionary[SimCluster, dict[FaultSchedule, float]] = WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One fault at `time` virtual seconds after the schedule starts."""

    time: float
    kind: FaultKind
    groups: Groups = ()
    """partition: the groups that cannot reach each other; partition_oneway: (sources, dests)."""
    loss: float = 0.0
    """loss: the packet loss probability set on every default link."""
    node: str = ""
    """crash / restart: the node."""
    keep_state: bool = True
    """restart: keep the node's replicas, as if persisted (False: it comes back empty)."""

    def __post_init__(self) -> None:
        if self.kind not in get_args(FaultKind):
            raise ValueError(f"unknown fault kind {self.kind!r}; kinds are {', '.join(KINDS)}")
        if not self.time >= 0.0:
            raise ValueError(f"fault time must be >= 0, got {self.time!r}")
        if self.kind in ("partition", "partition_oneway"):
            if self.kind == "partition_oneway" and len(self.groups) != 2:
                raise ValueError("partition_oneway needs groups=(sources, destinations)")
            if len(self.groups) < 2 or not all(self.groups):
                raise ValueError(f"{self.kind} needs at least two non-empty groups")
            members = [node for group in self.groups for node in group]
            if len(set(members)) != len(members):
                raise ValueError(f"{self.kind} groups must be disjoint, got {self.groups!r}")
        if self.kind == "loss" and not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss must be a probability in [0, 1], got {self.loss!r}")
        if self.kind in ("crash", "restart") and not self.node:
            raise ValueError(f"{self.kind} needs a node")

    @classmethod
    def partition(cls, time: float, *groups: Sequence[str]) -> FaultEvent:
        """Split the cluster into `groups` (unlisted nodes form one more group)."""
        return cls(time, "partition", groups=tuple(tuple(g) for g in groups))

    @classmethod
    def partition_oneway(
        cls, time: float, sources: Sequence[str], destinations: Sequence[str]
    ) -> FaultEvent:
        """Cut messages from `sources` to `destinations` only."""
        return cls(time, "partition_oneway", groups=(tuple(sources), tuple(destinations)))

    @classmethod
    def set_loss(cls, time: float, loss: float) -> FaultEvent:
        """Set packet loss on every default link."""
        return cls(time, "loss", loss=loss)

    @classmethod
    def crash(cls, time: float, node: str) -> FaultEvent:
        """Crash `node`."""
        return cls(time, "crash", node=node)

    @classmethod
    def restart(cls, time: float, node: str, keep_state: bool = True) -> FaultEvent:
        """Restart the crashed `node`, with or without its replicas."""
        return cls(time, "restart", node=node, keep_state=keep_state)

    @classmethod
    def heal(cls, time: float) -> FaultEvent:
        """End every partition and one-way cut (loss stays as set)."""
        return cls(time, "heal")

    def apply_now(self, sim: SimCluster) -> None:
        """Perform this fault on `sim` at its current time (restarting an up node does nothing)."""
        if self.kind == "partition":
            sim.partition(*self.groups)
        elif self.kind == "partition_oneway":
            sim.partition_oneway(*self.groups)
        elif self.kind == "loss":
            sim.set_loss(self.loss)
        elif self.kind == "crash":
            sim.crash(self.node)
        elif self.kind == "restart":
            if not sim.node(self.node).up:
                sim.restart(self.node, keep_state=self.keep_state)
        else:
            sim.heal()

    def __repr__(self) -> str:
        if self.kind in ("partition", "partition_oneway"):
            args = ", ".join(repr(group) for group in self.groups)
        elif self.kind == "loss":
            args = repr(self.loss)
        elif self.kind == "restart" and not self.keep_state:
            args = f"{self.node!r}, keep_state=False"
        else:
            args = repr(self.node) if self.node else ""
        name = "set_loss" if self.kind == "loss" else self.kind
        return f"FaultEvent.{name}({', '.join(filter(None, [repr(self.time), args]))})"

    def __str__(self) -> str:
        when = f"t+{self.time:g}s"
        if self.kind == "partition":
            return f"{when} partition " + " | ".join(" ".join(g) for g in self.groups)
        if self.kind == "partition_oneway":
            return f"{when} cut {' '.join(self.groups[0])} -> {' '.join(self.groups[1])}"
        if self.kind == "loss":
            return f"{when} loss {self.loss:.3f}"
        if self.kind == "restart":
            return f"{when} restart {self.node}" + ("" if self.keep_state else " (empty)")
        if self.kind == "crash":
            return f"{when} crash {self.node}"
        return f"{when} heal"


@dataclass(frozen=True, slots=True)
class FaultSchedule:
    """Faults in time order, as offsets from the moment the schedule is applied."""

    events: Sequence[FaultEvent] = ()
    """Stored as a tuple, whatever sequence is given."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "events", tuple(self.events))
        times = [event.time for event in self.events]
        if times != sorted(times):
            raise ValueError("fault events must be in non-decreasing time order")

    @property
    def end_time(self) -> float:
        """The offset of the last event (0.0 for an empty schedule)."""
        return self.events[-1].time if self.events else 0.0

    def apply(self, sim: SimCluster, start: float | None = None) -> float:
        """Schedule every event on `sim` at `start` (default: now) + its offset; the last time."""
        base = sim.now if start is None else start
        for event in self.events:
            sim.at(base + event.time, _Action(event, sim))
        ends = _APPLIED.setdefault(sim, {})
        ends[self] = max(ends.get(self, 0.0), base + self.end_time)
        return base + self.end_time

    def problems(self, nodes: int | Sequence[str], max_crashed: int | None = None) -> list[str]:
        """Why this schedule is not valid for `nodes` (empty when it is), per fault_schedules()."""
        ids = _node_ids(nodes)
        limit = _crash_limit(len(ids), max_crashed)
        known = set(ids)
        crashed: set[str] = set()
        problems = []
        for event in self.events:
            listed = [node for group in event.groups for node in group]
            if event.node:
                listed.append(event.node)
            unknown = sorted(set(listed) - known)
            if unknown:
                problems.append(f"{event}: unknown node(s) {', '.join(unknown)}")
            if event.kind == "partition" and set(listed) != known:
                problems.append(f"{event}: the groups do not cover every node")
            elif event.kind == "loss" and not 0.0 <= event.loss <= MAX_LOSS:
                problems.append(f"{event}: loss outside [0, {MAX_LOSS}]")
            elif event.kind == "crash":
                if event.node in crashed:
                    problems.append(f"{event}: {event.node} is already down")
                crashed.add(event.node)
                if len(crashed) > limit:
                    problems.append(f"{event}: {len(crashed)} nodes down, more than {limit}")
            elif event.kind == "restart":
                if event.node not in crashed:
                    problems.append(f"{event}: {event.node} is not down")
                crashed.discard(event.node)
        return problems

    def __repr__(self) -> str:
        inner = ", ".join(repr(event) for event in self.events)
        return f"FaultSchedule(({inner}{',' if len(self.events) == 1 else ''}))"

    def __str__(self) -> str:
        return "; ".join(str(event) for event in self.events) or "no faults"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Print as repr(), one event a line when long (Hypothesis and IPython use this)."""
        with printer.group(4, "FaultSchedule((", "))"):
            for i, event in enumerate(self.events):
                if i:
                    printer.text(",")
                printer.breakable("")
                printer.text(repr(event))
            if len(self.events) == 1:
                printer.text(",")


@dataclass(frozen=True, slots=True)
class _Action:
    """A scheduled fault: a callable for sim.at() that reads well in a debugger."""

    event: FaultEvent
    sim: SimCluster

    def __call__(self) -> None:
        self.event.apply_now(self.sim)


def settle(
    sim: SimCluster,
    schedule: FaultSchedule | None = None,
    *,
    quiet: float = 1.0,
    timeout: float = 60.0,
    keep_state: bool = True,
) -> bool:
    """Run out the applied schedules, heal, restart crashed nodes: True if it then converges."""
    # Every schedule applied to `sim` fires first, so no late fault undoes the heal; `schedule`,
    # if given, must be one of them. Converged means: within `timeout` virtual seconds, and
    # then for `quiet` seconds in a row (a stale suspicion rumour may still undo an early,
    # lucky agreement just after the heal).
    applied = _APPLIED.get(sim, {})
    if schedule is not None and schedule not in applied:
        raise ValueError("this schedule was never applied to this cluster: call apply(sim) first")
    until = max(applied.values(), default=sim.now)
    sim.run_to(until)  # every event due by then fires before the heal, even one due right now
    sim.heal()
    sim.set_loss(0.0)
    for node in list(sim.nodes.values()):
        if not node.up:
            sim.restart(node.node_id, keep_state=keep_state)
    deadline = sim.now + timeout
    stable_since: float | None = None
    while True:
        if sim.converged():
            stable_since = sim.now if stable_since is None else stable_since
            if sim.now - stable_since >= quiet:
                return True
        else:
            stable_since = None
        if sim.now >= deadline:
            return False
        sim.run_for(min(_STEP, deadline - sim.now))


heal_and_settle = settle


def fault_schedules(
    nodes: int | Sequence[str],
    max_events: int = 8,
    max_time: float = 30.0,
    *,
    kinds: Collection[FaultKind] = KINDS,
    keep_state: bool | None = None,
    max_crashed: int | None = None,
) -> SearchStrategy[FaultSchedule]:
    """A Hypothesis strategy for valid fault schedules over `nodes` (a count means n0, n1, ...).

    Partitions split every node into 2-3 non-empty groups; one-way cuts run between two disjoint
    groups; loss is in [0, 0.3]; a crash takes an up node and leaves a majority up (at most
    `max_crashed`); a restart takes a crashed node, keeping its state if `keep_state` is True,
    losing it if False, either if None. Times are whole milliseconds, in order, in [0, max_time].
    """
    from hypothesis import strategies as st

    ids = _node_ids(nodes)
    if max_events < 0 or max_time < 0:
        raise ValueError("max_events and max_time must be >= 0")
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown fault kind(s) {sorted(unknown)}; kinds are {', '.join(KINDS)}")
    limit = _crash_limit(len(ids), max_crashed)
    usable = [
        k
        for k in KINDS
        if k in kinds
        and (len(ids) > 1 or k not in ("partition", "partition_oneway"))
        and (limit > 0 or k not in ("crash", "restart"))
    ]
    if not usable:
        return st.just(FaultSchedule())
    millis = round(max_time * 1000)

    @st.composite
    def raw_event(draw: DrawFn) -> tuple[int, FaultKind, Any]:
        # Every part is drawn whatever the state, so deleting an event during shrinking never
        # makes a later one invalid: resolve() turns a raw event into a valid one or drops it.
        time = draw(st.integers(0, millis))
        kind = draw(st.sampled_from(usable))
        params: Any = None
        if kind == "partition":
            order = draw(st.permutations(ids))
            first = draw(st.integers(1, len(ids) - 1))
            cuts = [first]
            if first < len(ids) - 1 and draw(st.booleans()):  # a third group
                cuts.append(draw(st.integers(first + 1, len(ids) - 1)))
            params = (order, cuts)
        elif kind == "partition_oneway":
            order = draw(st.permutations(ids))
            sources = draw(st.integers(1, len(ids) - 1))
            destinations = draw(st.integers(1, len(ids) - sources))
            params = (order, sources, destinations)
        elif kind == "loss":
            params = draw(st.integers(0, round(MAX_LOSS * 1000))) / 1000
        elif kind == "crash":
            params = draw(st.integers(0, len(ids) - 1))
        elif kind == "restart":
            index = draw(st.integers(0, len(ids) - 1))
            keep = keep_state if keep_state is not None else not draw(st.booleans())
            params = (index, keep)
        return time, kind, params

    def resolve(raw: list[tuple[int, FaultKind, Any]]) -> FaultSchedule:
        events = []
        down: list[str] = []
        for time_ms, kind, params in sorted(raw, key=lambda r: r[0]):
            time = time_ms / 1000
            if kind == "partition":
                order, cuts = params
                bounds = [0, *cuts, len(order)]
                groups = [order[a:b] for a, b in pairwise(bounds)]
                events.append(FaultEvent.partition(time, *_canonical(groups, ids)))
            elif kind == "partition_oneway":
                order, sources, destinations = params
                src, dst = _canonical(
                    [order[:sources], order[sources : sources + destinations]], ids, sort=False
                )
                events.append(FaultEvent.partition_oneway(time, src, dst))
            elif kind == "loss":
                events.append(FaultEvent.set_loss(time, params))
            elif kind == "crash":
                up = [node for node in ids if node not in down]
                if len(down) < limit:
                    node = up[params % len(up)]
                    down.append(node)
                    events.append(FaultEvent.crash(time, node))
            elif kind == "restart":
                index, keep = params
                if down:
                    node = down.pop(index % len(down))
                    events.append(FaultEvent.restart(time, node, keep_state=keep))
            else:
                events.append(FaultEvent.heal(time))
        return FaultSchedule(tuple(events))

    @st.composite
    def schedules(draw: DrawFn) -> FaultSchedule:
        # Not .map(resolve): a composite prints a failing example as the schedule's own repr.
        return resolve(draw(st.lists(raw_event(), max_size=max_events)))

    return schedules()


def _node_ids(nodes: int | Sequence[str]) -> list[str]:
    if isinstance(nodes, int):
        if nodes < 1:
            raise ValueError(f"need at least one node, got {nodes}")
        return [f"n{i}" for i in range(nodes)]
    ids = list(nodes)
    if not ids or len(set(ids)) != len(ids):
        raise ValueError("node ids must be unique and at least one")
    return ids


def _crash_limit(count: int, max_crashed: int | None) -> int:
    # A majority stays up by default; never fewer than one node, whatever is asked.
    limit = (count - 1) // 2 if max_crashed is None else max_crashed
    return max(0, min(limit, count - 1))


def _canonical(
    groups: Sequence[Sequence[str]], ids: Sequence[str], sort: bool = True
) -> list[tuple[str, ...]]:
    """Each group in node order, and (if `sort`) the groups by their first node."""
    rank = {node: i for i, node in enumerate(ids)}
    ordered = [tuple(sorted(group, key=rank.__getitem__)) for group in groups]
    return sorted(ordered, key=lambda g: rank[g[0]]) if sort else ordered
