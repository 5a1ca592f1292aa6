"""SimCluster itself: determinism, the fault verbs, crash and restart, stats."""

from __future__ import annotations

import pytest

from crdts import AWORSet, LWWMap, PNCounter
from simulations import Dist, SimCluster, settle
from simulations.invariants import no_lost_writes


def scripted_run(seed: int) -> SimCluster:
    """A run with writes, a partition, loss and a heal."""
    sim = SimCluster(nodes=6, seed=seed)
    sim.run_for(3.0)
    sim.set_link("n0", "n1", loss=0.2, duplicate=0.1, reorder=True, latency=Dist.exponential(0.01))
    sim.node("n0").replica("hits", PNCounter).increment(2)
    sim.partition(["n0", "n1", "n2"], ["n3", "n4", "n5"])
    sim.node("n4").replica("online", AWORSet).add("sensor-1")
    sim.run_for(10.0)
    sim.heal()
    sim.run_until(lambda s: s.converged(), timeout=60.0)
    return sim


def test_the_same_seed_replays_exactly():
    first, second = scripted_run(11), scripted_run(11)
    assert first.trace_digest() == second.trace_digest()
    assert first.now == second.now
    assert first.stats()["messages"] == second.stats()["messages"]


def test_another_seed_takes_another_path():
    assert scripted_run(11).trace_digest() != scripted_run(12).trace_digest()


def test_a_one_way_cut_blocks_only_one_direction():
    sim = SimCluster(nodes=3, seed=1)
    sim.run_until(lambda s: s.converged(), timeout=30.0)
    sim.partition_oneway(["n0"], ["n1", "n2"])
    sim.node("n0").replica("config", LWWMap).set("mode", "a")
    sim.node("n1").replica("seen", AWORSet).add("x")
    sim.run_for(0.5)
    assert "config" not in sim.node("n1").engine.replication.replicas
    assert "x" in sim.node("n0").engine.replication.replicas["seen"]
    sim.heal()
    assert sim.run_until(lambda s: s.converged(), timeout=60.0)


def test_held_messages_arrive_on_release():
    sim = SimCluster(nodes=2, seed=1)
    sim.run_until(lambda s: s.converged(), timeout=30.0)
    sim.hold("n0", "n1")
    sim.node("n0").replica("hits", PNCounter).increment(5)
    sim.run_for(5.0)
    assert "hits" not in sim.node("n1").engine.replication.replicas
    sim.release("n0", "n1")
    sim.run_for(0.1)
    assert sim.node("n1").engine.replication.replicas["hits"].value == 5


def test_total_loss_on_a_link_is_repaired_through_other_nodes():
    sim = SimCluster(nodes=4, seed=3)
    sim.run_until(lambda s: s.converged(), timeout=30.0)
    sim.set_link("n0", "n1", loss=1.0)
    sim.node("n0").replica("hits", PNCounter).increment(1)
    assert sim.run_until(lambda s: s.converged(), timeout=30.0)
    assert sim.node("n1").replica("hits", PNCounter).value == 1


def test_crash_is_detected_and_a_restart_with_state_keeps_writes():
    sim = SimCluster(nodes=5, seed=2)
    sim.run_until(lambda s: s.converged(), timeout=30.0)
    sim.node("n2").replica("hits", PNCounter).increment(4)
    sim.run_for(1.0)
    sim.crash("n2")
    assert sim.run_until(lambda s: s.converged(), timeout=60.0)  # n2 seen as dead everywhere
    detection = sim.stats()["detection"]["n2"]
    assert 0 < detection["first"] <= detection["all"] < 60
    with pytest.raises(RuntimeError, match="crashed"):
        sim.node("n2").replica("hits", PNCounter).increment(1)
    sim.restart("n2", keep_state=True)
    sim.node("n2").replica("hits", PNCounter).increment(1)
    assert sim.run_until(lambda s: s.converged(), timeout=60.0)
    assert sim.node("n0").replica("hits", PNCounter).value == 5
    assert not no_lost_writes(sim)


def test_a_write_that_never_left_a_node_wiped_by_restart_is_marked_lost():
    sim = SimCluster(nodes=3, seed=4)
    sim.run_until(lambda s: s.converged(), timeout=30.0)
    sim.partition(["n0"], ["n1", "n2"])
    sim.node("n0").replica("hits", PNCounter).increment(9)
    sim.crash("n0")
    sim.restart("n0", keep_state=False)
    sim.heal()
    assert sim.run_until(lambda s: s.converged(), timeout=60.0)
    assert [w.lost for w in sim.writes] == [True]
    assert not no_lost_writes(sim)


def test_a_shared_state_delete_lost_with_its_node_is_marked_lost():
    """Found by the state machine: n3 deletes a key and crashes before pushing it. A node that
    lacks the deleted item (it was down when the key was set) only parks such a deletion, so
    it does not hold it: the delete is lost with n3, not "missing" everywhere after settling."""
    sim = SimCluster(nodes=4, seed=0)
    sim.run_for(2.0)
    sim.node("n1").shared_state("line-3").counter("visits").increment(1)
    sim.crash("n1")
    sim.node("n0").shared_state("line-3")["k1"] = 0
    sim.run_for(0.01)
    del sim.node("n3").shared_state("line-3")["k1"]
    sim.restart("n1", keep_state=True)  # holds line-3, but not k1
    sim.crash("n3")
    sim.restart("n3", keep_state=False)
    assert [w.lost for w in sim.writes] == [False, False, True]
    assert settle(sim, quiet=2.0, timeout=60.0)
    assert not no_lost_writes(sim)
    assert sim.node("n0").shared_state("line-3").get("k1") == 0


def test_a_restarted_empty_node_writes_under_a_new_replica_id():
    sim = SimCluster(nodes=3, seed=5)
    sim.run_until(lambda s: s.converged(), timeout=30.0)
    sim.node("n1").replica("hits", PNCounter).increment(10)
    sim.run_for(1.0)
    sim.crash("n1")
    sim.restart("n1", keep_state=False)
    sim.node("n1").replica("hits", PNCounter).increment(1)  # must not hide under the old slot
    assert sim.run_until(lambda s: s.converged(), timeout=60.0)
    assert sim.node("n2").replica("hits", PNCounter).value == 11


def test_stats_and_timeline():
    sim = SimCluster(nodes=4, seed=6, timeline_interval=0.5)
    sim.run_for(5.0)
    stats = sim.stats()
    assert stats["messages"] > 0 and stats["bytes"] > stats["messages"]
    assert set(stats["per_node"]) == {"n0", "n1", "n2", "n3"}
    assert len(sim.timeline) == 11
    assert sim.timeline[-1].members_agreeing == 1.0


def test_bad_verbs_are_refused_clearly():
    with pytest.raises(ValueError, match="unique"):
        SimCluster(nodes=["a", "a"])
    with pytest.raises(ValueError, match="bootstrap"):
        SimCluster(nodes=2, bootstrap="magic")
    sim = SimCluster(nodes=2)
    with pytest.raises(KeyError, match="no node 'n9'"):
        sim.node("n9")
    with pytest.raises(ValueError, match="is up"):
        sim.restart("n0")
    with pytest.raises(ValueError, match="two partition groups"):
        sim.partition(["n0", "n1"], ["n1"])
    with pytest.raises(ValueError, match="probability"):
        sim.set_link("n0", "n1", loss=2.0)


def test_a_route_is_the_link_when_reachable_and_none_when_cut():
    from simulations.network import Link, Network

    net = Network(Link(loss=0.1))
    net.set_link("a", "b", loss=0.5)
    assert net.route("a", "b") == Link(loss=0.5) and net.route("b", "a") == Link(loss=0.1)
    net.partition([["a"], ["b", "c"]])
    net.partition_oneway(["b"], ["c"])
    for src, dst in (("a", "b"), ("b", "a"), ("b", "c"), ("c", "b"), ("a", "a")):
        assert (net.route(src, dst) is not None) == net.reachable(src, dst)
        if net.reachable(src, dst):
            assert net.route(src, dst) == net.link(src, dst)
    net.heal()
    assert net.route("a", "c") == Link(loss=0.1) and not net.holding
    net.hold("a", "c")
    assert net.holding


def test_a_run_without_event_records_keeps_its_detection_stats_and_its_trace():
    def run(record_events: bool) -> SimCluster:
        sim = SimCluster(nodes=5, seed=4, bootstrap="formed", record_events=record_events)
        sim.run_for(3.0)
        sim.crash("n4")
        sim.run_for(30.0)
        return sim

    kept, dropped = run(True), run(False)
    assert any(events for events in (n.events for n in kept.nodes.values()))
    assert all(not n.events for n in dropped.nodes.values())
    assert dropped.stats()["detection"] == kept.stats()["detection"]
    assert set(dropped.stats()["detection"]["n4"]) >= {"first", "all"}
    assert dropped.trace_digest() == kept.trace_digest()


def test_garbage_collection_is_paused_only_while_the_simulation_runs():
    import gc

    sim = SimCluster(nodes=3, seed=1)
    seen: list[bool] = []
    sim.at(0.5, lambda: seen.append(gc.isenabled()))
    assert gc.isenabled()
    sim.run_for(1.0)
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:  # a caller that runs with collection off keeps it off
        sim.run_for(1.0)
        assert not gc.isenabled()
    finally:
        gc.enable()
