"""ShardedCluster: one simulation over worker processes, with the verbs of a large run."""

from __future__ import annotations

import os

import pytest

from simulations import Dist, Link
from simulations.sharded import ShardedCluster

# a 5-10 ms link: 5 ms windows keep a test run to a few thousand swaps between the workers
LINK = Link(latency=Dist.uniform(0.005, 0.010))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def partition_and_heal(seed: int) -> tuple[bool, bool, str, dict[str, object]]:
    with ShardedCluster(nodes=10, seed=seed, workers=2, link=LINK) as sim:
        ids = sim.ids
        sim.run_for(3.0)
        settled = sim.converged()
        sim.partition(ids[:3], ids[3:])  # across the two workers' halves
        sim.run_for(15.0)
        cut = sim.members("n0")
        assert cut["n9"] == "dead" and cut["n1"] == "alive"
        assert not sim.converged()
        sim.heal()
        sim.run_for(25.0)
        return settled, sim.converged(), sim.trace_digest(), sim.stats()


def test_a_partition_across_workers_heals_and_a_seed_replays_exactly() -> None:
    first = partition_and_heal(3)
    assert first[0] and first[1]
    stats = first[3]
    assert stats["workers"] == 2 and stats["sent"] > 0 and stats["bytes"] > stats["sent"]
    assert stats["dropped"] > 0  # the partition dropped messages between the workers
    assert partition_and_heal(3)[2] == first[2]
    assert partition_and_heal(4)[2] != first[2]


def test_a_crash_on_one_worker_is_seen_on_the_other_and_its_workers_stop() -> None:
    sim = ShardedCluster(nodes=8, seed=1, workers=2, link=LINK)
    pids = sim.pids
    assert len(pids) == 2
    try:
        sim.run_for(2.0)
        sim.crash("n1")  # on the first worker
        sim.run_for(20.0)
        assert sim.members("n6")["n1"] == "dead"  # seen from the second
        assert sim.converged()  # a stopped node seen as dead is agreement
        sim.restart("n1")
        sim.run_for(15.0)
        assert sim.members("n6")["n1"] == "alive" and sim.converged()
    finally:
        sim.close()
    assert all(_gone(pid) for pid in pids)
    sim.close()  # twice is harmless


def test_bad_arguments_and_a_worker_error_are_raised_in_the_caller() -> None:
    with pytest.raises(ValueError, match="workers"):
        ShardedCluster(nodes=3, workers=0, link=LINK)
    with pytest.raises(ValueError, match="workers"):
        ShardedCluster(nodes=3, workers=4, link=LINK)
    with pytest.raises(ValueError, match="unique"):
        ShardedCluster(nodes=["a", "a"], workers=1, link=LINK)
    with pytest.raises(ValueError, match="minimum link latency"):
        ShardedCluster(nodes=4, workers=2, link=Link(latency=Dist.constant(0.0)))
    with ShardedCluster(nodes=4, workers=2, link=LINK) as sim:
        with pytest.raises(KeyError):
            sim.crash("nobody")
        with pytest.raises(ValueError, match="is up"):
            sim.restart("n0")  # raised in the worker, re-raised here
        sim.run_for(1.0)  # the workers keep running after an error
        assert sim.now == 1.0
