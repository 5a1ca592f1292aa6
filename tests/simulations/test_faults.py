"""Fault schedules: the strategy makes only valid, well-shrinking schedules, and any of them,
applied to a 5-node cluster under writes and then settled, converges with nothing lost."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from crdts import AWORSet, PNCounter
from simulations import SimCluster
from simulations.faults import KINDS, MAX_LOSS, FaultEvent, FaultSchedule, fault_schedules, settle
from simulations.invariants import (
    memberships_agree,
    no_lost_writes,
    no_resurrection,
    replicas_equal,
)

# 500 examples in CI (HYPOTHESIS_PROFILE=ci), 150 locally (under 10 s).
CLUSTER_EXAMPLES = 500 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 150
NODE_LISTS = st.one_of(
    st.integers(1, 9),
    st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=8, unique=True),
)


def _check_valid(schedule: FaultSchedule, ids: list[str], max_events: int, max_time: float) -> None:
    """The rules fault_schedules() promises, checked independently of FaultSchedule.problems()."""
    assert len(schedule.events) <= max_events
    times = [event.time for event in schedule.events]
    assert times == sorted(times)
    assert all(0.0 <= t <= max_time for t in times)
    down: set[str] = set()
    for event in schedule.events:
        assert event.kind in KINDS
        if event.kind == "partition":
            assert 2 <= len(event.groups) <= 3 and all(event.groups)
            members = [node for group in event.groups for node in group]
            assert sorted(members) == sorted(ids)
        elif event.kind == "partition_oneway":
            sources, destinations = event.groups
            assert sources and destinations and not set(sources) & set(destinations)
            assert set(sources) | set(destinations) <= set(ids)
        elif event.kind == "loss":
            assert 0.0 <= event.loss <= MAX_LOSS
        elif event.kind == "crash":
            assert event.node in ids and event.node not in down
            down.add(event.node)
            assert len(ids) - len(down) > len(ids) // 2, "a majority stays up"
        elif event.kind == "restart":
            assert event.node in down
            down.discard(event.node)


@settings(max_examples=200)
@given(
    nodes=NODE_LISTS,
    max_events=st.integers(0, 12),
    max_time=st.sampled_from([0.0, 1.0, 30.0]),
    data=st.data(),
)
def test_strategy_generates_only_valid_schedules(
    nodes: int | list[str], max_events: int, max_time: float, data: st.DataObject
) -> None:
    """Every drawn schedule obeys the rules, and FaultSchedule.problems() agrees."""
    schedule = data.draw(fault_schedules(nodes, max_events=max_events, max_time=max_time))
    ids = [f"n{i}" for i in range(nodes)] if isinstance(nodes, int) else nodes
    _check_valid(schedule, ids, max_events, max_time)
    assert schedule.problems(nodes) == []


@given(fault_schedules(5))
def test_repr_is_python_that_rebuilds_the_schedule(schedule: FaultSchedule) -> None:
    """A failing schedule can be pasted back into a test as it was printed."""
    namespace = {"FaultEvent": FaultEvent, "FaultSchedule": FaultSchedule}
    assert eval(repr(schedule), namespace) == schedule


@given(fault_schedules(5, kinds=("crash", "restart"), keep_state=False, max_crashed=4))
def test_strategy_options_are_honoured(schedule: FaultSchedule) -> None:
    """kinds, keep_state and max_crashed (clamped so one node stays up) restrict the draws."""
    assert {event.kind for event in schedule.events} <= {"crash", "restart"}
    assert all(not event.keep_state for event in schedule.events if event.kind == "restart")
    assert schedule.problems(5, max_crashed=4) == []


def _minimal(condition: Callable[[FaultSchedule], bool]) -> FaultSchedule:
    # find() stops at the first match and shrinks it; the budget only matters for rare ones.
    return find(fault_schedules(5), condition, settings=settings(database=None, max_examples=2000))


def test_schedules_shrink_to_a_readable_minimum() -> None:
    """Shrinking drops irrelevant events, moves times to 0 and picks the first nodes."""
    two_crashes = _minimal(lambda s: sum(e.kind == "crash" for e in s.events) >= 2)
    assert two_crashes == FaultSchedule((FaultEvent.crash(0.0, "n0"), FaultEvent.crash(0.0, "n1")))
    three_groups = _minimal(lambda s: any(len(e.groups) == 3 for e in s.events))
    assert three_groups == FaultSchedule(
        (FaultEvent.partition(0.0, ["n0"], ["n1"], ["n2", "n3", "n4"]),)
    )
    late_loss = _minimal(lambda s: any(e.kind == "loss" and e.time > 10 for e in s.events))
    assert late_loss == FaultSchedule((FaultEvent.set_loss(10.001, 0.0),))


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        (FaultSchedule((FaultEvent.restart(1.0, "n0"),)), "n0 is not down"),
        (FaultSchedule((FaultEvent.crash(0, "n0"), FaultEvent.crash(1, "n0"))), "already down"),
        (
            FaultSchedule(tuple(FaultEvent.crash(0, f"n{i}") for i in range(3))),
            "3 nodes down, more than 2",
        ),
        (FaultSchedule((FaultEvent.crash(0, "x9"),)), "unknown node(s) x9"),
        (FaultSchedule((FaultEvent.partition(0, ["n0"], ["n1"]),)), "do not cover every node"),
        (FaultSchedule((FaultEvent.set_loss(0, 0.5),)), "loss outside"),
    ],
)
def test_problems_name_what_is_invalid(schedule: FaultSchedule, problem: str) -> None:
    """FaultSchedule.problems() explains each broken rule."""
    assert any(problem in p for p in schedule.problems(5)), schedule.problems(5)


def test_malformed_events_and_schedules_are_refused() -> None:
    """Events check their own arguments; a schedule must be in time order."""
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultEvent(0.0, "explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="disjoint"):
        FaultEvent.partition(0.0, ["n0", "n1"], ["n1"])
    with pytest.raises(ValueError, match="non-empty"):
        FaultEvent.partition_oneway(0.0, ["n0"], [])
    with pytest.raises(ValueError, match="probability"):
        FaultEvent.set_loss(0.0, 1.5)
    with pytest.raises(ValueError, match=">= 0"):
        FaultEvent.heal(-1.0)
    with pytest.raises(ValueError, match="needs a node"):
        FaultEvent(0.0, "crash")
    with pytest.raises(ValueError, match="time order"):
        FaultSchedule((FaultEvent.heal(2.0), FaultEvent.heal(1.0)))
    with pytest.raises(ValueError, match="unknown fault kind"):
        fault_schedules(3, kinds=("meteor",))  # type: ignore[arg-type]


def test_apply_fires_each_event_at_its_offset() -> None:
    """Offsets count from `start` (default: now); apply() returns the last event's time."""
    sim = SimCluster(nodes=5, seed=3)
    sim.run_for(1.0)
    schedule = FaultSchedule(
        (
            FaultEvent.partition(0.5, ["n0", "n1"], ["n2", "n3", "n4"]),
            FaultEvent.crash(1.0, "n4"),
            FaultEvent.set_loss(1.5, 0.1),
            FaultEvent.heal(2.0),
            FaultEvent.restart(2.5, "n4", keep_state=False),
        )
    )
    assert schedule.end_time == 2.5
    assert schedule.apply(sim) == pytest.approx(3.5)
    sim.run_for(0.4)
    assert sim.network.reachable("n0", "n2")
    sim.run_for(0.2)
    assert not sim.network.reachable("n0", "n2") and sim.network.reachable("n0", "n1")
    sim.run_for(0.5)
    assert not sim.node("n4").up
    sim.run_for(0.5)
    assert sim.network.default.loss == 0.1
    sim.run_for(0.5)
    assert sim.network.reachable("n0", "n2")
    sim.run_for(0.5)
    assert sim.node("n4").up


def test_settle_heals_restarts_and_waits_for_a_steady_convergence() -> None:
    """settle() runs the schedule out, ends every fault, restarts crashed nodes, then converges."""
    sim = SimCluster(nodes=5, seed=11)
    schedule = FaultSchedule(
        (
            FaultEvent.set_loss(0.0, 0.2),
            FaultEvent.partition_oneway(1.0, ["n0"], ["n1", "n2"]),
            FaultEvent.crash(2.0, "n3"),
        )
    )
    schedule.apply(sim)
    sim.node("n0").replica("hits", PNCounter).increment(4)
    assert settle(sim, schedule, quiet=2.0)
    assert sim.now > schedule.end_time + 2.0
    assert all(node.up for node in sim.nodes.values())
    assert sim.network.default.loss == 0.0 and not sim.network.faulty
    assert {n.replica("hits", PNCounter).value for n in sim.live_nodes()} == {4}


def test_settle_runs_out_every_applied_schedule_first() -> None:
    """A late crash cannot undo the heal; a schedule never applied is a mistake, said so."""
    sim = SimCluster(nodes=3, seed=2)
    sim.run_for(5.0)
    late = FaultSchedule([FaultEvent.crash(10.0, "n1")])
    late.apply(sim)  # fires at t=15
    assert settle(sim)
    assert sim.now > 15.0 and sim.node("n1").up
    at_once = FaultSchedule([FaultEvent.crash(0.0, "n0")])
    at_once.apply(sim)  # due now: it fires before the heal, and n0 is restarted
    assert settle(sim) and sim.node("n0").up
    with pytest.raises(ValueError, match="never applied"):
        settle(sim, FaultSchedule([FaultEvent.heal(1.0)]))


def test_settle_fires_a_last_event_whose_time_is_an_inexact_float_sum() -> None:
    """0.1 + 6.232 is 6.332 here, but time reached by steps may stop at 6.331999...: the
    partition due then must still fire before the heal, not after it (found by the
    partition_test example: the cluster stayed split for good)."""
    sim = SimCluster(nodes=5, seed=1)
    sim.run_until(lambda s: s.converged(), timeout=30.0)
    schedule = FaultSchedule([FaultEvent.partition(6.232, ("n0",), ("n1", "n2", "n3", "n4"))])
    end = schedule.apply(sim)
    sim.run_for(1.0)
    assert sim.now + (end - sim.now) < end  # the float trap this test is about
    assert settle(sim, schedule, timeout=30.0)
    assert sim.converged()


def test_settle_reports_a_cluster_that_cannot_converge_in_time() -> None:
    """With no time to converge after a long partition, settle() says False."""
    sim = SimCluster(nodes=3, seed=5)
    sim.partition(["n0"], ["n1", "n2"])
    sim.node("n0").replica("hits", PNCounter).increment()
    sim.run_for(30.0)
    assert not settle(sim, timeout=0.0)


def test_same_seed_and_schedule_replay_exactly() -> None:
    """A schedule is data: applied twice to the same seed, it gives the same run."""
    schedule = FaultSchedule(
        (
            FaultEvent.set_loss(0.2, 0.1),
            FaultEvent.partition(0.5, ["n0", "n1"], ["n2"], ["n3", "n4"]),
            FaultEvent.crash(1.0, "n2"),
            FaultEvent.partition_oneway(2.0, ["n3"], ["n0", "n1"]),
            FaultEvent.heal(3.0),
            FaultEvent.restart(3.5, "n2", keep_state=False),
        )
    )
    digests = []
    for _ in range(2):
        sim = SimCluster(nodes=5, seed=99)
        schedule.apply(sim)
        sim.node("n1").replica("tags", AWORSet).add("x")
        settle(sim, schedule)
        digests.append((sim.trace_digest(), sim.now))
    assert digests[0] == digests[1]


def test_faults_work_without_hypothesis_installed() -> None:
    """Hypothesis is a test extra: only fault_schedules() needs it, and it says so."""
    script = """
import sys
sys.modules["hypothesis"] = None  # as if not installed
from simulations import SimCluster
from simulations.faults import FaultEvent, FaultSchedule, fault_schedules, settle
sim = SimCluster(nodes=3, seed=1)
schedule = FaultSchedule((FaultEvent.crash(0.5, "n2"),))
schedule.apply(sim)
assert settle(sim, schedule) and sim.node("n2").up
try:
    fault_schedules(3)
except ImportError:
    print("strategy needs hypothesis")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "strategy needs hypothesis"


WRITES = st.lists(
    st.tuples(
        st.integers(0, 30_000),  # when, in virtual milliseconds
        st.integers(0, 4),  # which live node (an index, modulo the live nodes then)
        st.sampled_from(["increment", "decrement", "add", "remove"]),
        st.integers(0, 5),  # amount or element
    ),
    max_size=25,
)


@settings(max_examples=CLUSTER_EXAMPLES)
@given(schedule=fault_schedules(5), writes=WRITES, seed=st.integers(0, 2**32 - 1))
def test_any_schedule_then_settle_converges_with_nothing_lost(
    schedule: FaultSchedule, writes: list[tuple[int, int, str, int]], seed: int
) -> None:
    """Writes during random faults; after settle() all replicas agree and every write is there."""
    sim = SimCluster(nodes=5, seed=seed)
    schedule.apply(sim)
    counted: list[int] = []  # each counter write's amount, in the order they were made
    for when, index, operation, value in writes:
        sim.at(when / 1000, partial(_write, sim, index, operation, value, counted))
    last_write = max((w[0] / 1000 for w in writes), default=0.0)
    sim.run_for(max(last_write, schedule.end_time))
    detail = f"seed={seed} t={sim.now:.3f}"
    assert settle(sim, schedule), (
        f"no convergence ({detail}): {replicas_equal(sim)[:3]} {memberships_agree(sim)[:3]}"
    )
    assert not no_lost_writes(sim), f"lost writes ({detail}): {no_lost_writes(sim)[:3]}"
    assert not no_resurrection(sim), f"resurrection ({detail}): {no_resurrection(sim)[:3]}"
    # The counter in the application's own terms: the sum of every write not lost with a node.
    records = [w for w in sim.writes if w.replica == "hits"]
    expected = sum(amount for w, amount in zip(records, counted, strict=True) if not w.lost)
    replicas = [n.engine.replication.replicas.get("hits") for n in sim.live_nodes()]
    assert {r.value if r is not None else 0 for r in replicas} == {expected}, detail


def _write(sim: SimCluster, index: int, operation: str, value: int, counted: list[int]) -> None:
    live = sim.live_nodes()
    node = live[index % len(live)]
    if operation in ("increment", "decrement"):
        getattr(node.replica("hits", PNCounter), operation)(value)
        counted.append(value if operation == "increment" else -value)
    else:
        getattr(node.replica("tags", AWORSet), operation)(f"e{value}")


def test_a_counter_first_learned_from_a_peer_keeps_every_increment() -> None:
    """A replica adopted from a peer's delta counts under its own id (no_lost_writes is blind)."""
    sim = SimCluster(nodes=2, seed=0)
    sim.run_until(lambda s: s.converged(), timeout=10.0)
    sim.node("n0").replica("hits", PNCounter).increment()
    sim.run_for(1.0)  # n1 now holds "hits", adopted from n0's delta
    sim.node("n0").replica("hits", PNCounter).increment()
    sim.node("n1").replica("hits", PNCounter).increment()
    sim.run_for(2.0)
    assert sim.converged() and not no_lost_writes(sim)
    assert [n.replica("hits", PNCounter).value for n in sim.live_nodes()] == [3, 3]
