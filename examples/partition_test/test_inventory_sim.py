"""A user's test suite: the inventory under partitions, crashes and loss, on the simulator.

The fixtures `sim_cluster` and `assert_eventually` come from foundation-p2p's pytest plugin
(installed with `pip install "foundation-p2p[test]"`; nothing to put in conftest.py). Virtual
time: thirty simulated seconds of a five-node cluster run in milliseconds, with no sleeps.
A failing test prints its seed; `pytest --sim-seed N` replays it exactly.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from inventory import Inventory

from simulations import SimCluster
from simulations.testing import FaultSchedule, SimClusterFactory, fault_schedules, settle

AssertEventually = Callable[..., float]


def stock_everywhere(sim: SimCluster, item: str) -> set[int]:
    """The stock of `item` as each live warehouse sees it."""
    return {Inventory(node).stock(item) for node in sim.live_nodes()}


def test_both_sides_of_a_partition_keep_trading_and_nothing_is_lost(
    sim_cluster: SimClusterFactory, assert_eventually: AssertEventually
) -> None:
    sim = sim_cluster(nodes=5)
    assert_eventually(sim, lambda s: s.converged(), message="the cluster never formed")
    sim.partition(["n0", "n1"], ["n2", "n3", "n4"])
    Inventory(sim.node("n0")).receive("pallet", 10)
    Inventory(sim.node("n3")).receive("pallet", 7)
    Inventory(sim.node("n4")).ship("pallet", 2)
    sim.run_for(10.0)
    assert Inventory(sim.node("n1")).stock("pallet") == 10  # each side sees its own moves
    assert Inventory(sim.node("n2")).stock("pallet") == 5

    sim.heal()
    took = assert_eventually(
        sim, lambda s: stock_everywhere(s, "pallet") == {15}, message="stock never agreed"
    )
    assert took < 10.0  # virtual seconds after the heal


def test_a_warehouse_that_lost_its_disk_catches_up(
    sim_cluster: SimClusterFactory, assert_eventually: AssertEventually
) -> None:
    sim = sim_cluster(nodes=3)
    assert_eventually(sim, lambda s: s.converged())
    Inventory(sim.node("n0")).receive("crate", 4)
    assert_eventually(sim, lambda s: stock_everywhere(s, "crate") == {4})
    sim.crash("n2")
    Inventory(sim.node("n1")).receive("crate", 3)
    sim.run_for(5.0)
    sim.restart("n2", keep_state=False)  # back empty: peers refill it
    assert_eventually(sim, lambda s: stock_everywhere(s, "crate") == {7})


MOVES = st.lists(st.tuples(st.integers(0, 4), st.integers(-5, 9)), max_size=15)


@settings(max_examples=10, deadline=None)
# keep_state=True: warehouses persist their counters (a data dir), so a crash loses nothing
@given(schedule=fault_schedules(nodes=5, max_events=6, max_time=20.0, keep_state=True), moves=MOVES)
def test_random_faults_never_lose_a_movement(
    schedule: FaultSchedule, moves: list[tuple[int, int]]
) -> None:
    sim = SimCluster(nodes=5, seed=1)
    sim.run_until(lambda s: s.converged(), timeout=30.0)
    schedule.apply(sim)
    expected = 0
    for warehouse, count in moves:
        live = sim.live_nodes()
        inventory = Inventory(live[warehouse % len(live)])
        if count >= 0:
            inventory.receive("box", count)
        else:
            inventory.ship("box", -count)
        expected += count
        sim.run_for(0.5)
    assert settle(sim, schedule), "the cluster did not settle after the faults"
    assert stock_everywhere(sim, "box") == {expected}
