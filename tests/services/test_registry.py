"""The registry: instances on the sys/registry replica, local lookups, picks, watches."""

from __future__ import annotations

import pytest
from services_real import eventually, real_cluster, registered
from services_sim import SimServices

from crdts import LWWRegister, ORMap
from foundation_p2p.services.registry import REGISTRY, ServiceNotFound
from simulations.cluster import SimCluster

pytestmark = pytest.mark.timeout(120)


def test_an_instance_is_seen_everywhere_with_its_capabilities():
    services = SimServices(SimCluster(3, seed=1))
    services.run(3.0)
    services.registries["n2"].register_now("thermo", capabilities={"unit": "C"}, meta={"v": 2})
    assert services.run_until(lambda: all(r.lookup("thermo") for r in services.registries.values()))
    (instance,) = services.registries["n0"].lookup("thermo")
    assert (instance.node, instance.capabilities, instance.meta) == ("n2", {"unit": "C"}, {"v": 2})
    assert services.registries["n0"].lookup("thermo", where={"unit": "C"}) == (instance,)
    assert services.registries["n0"].lookup("thermo", where={"unit": "F"}) == ()
    assert services.registries["n0"].lookup("thermo", where={"missing": 1}) == ()
    assert services.registries["n1"].names() == ["thermo"]


def test_a_crashed_nodes_instances_vanish_as_soon_as_it_is_dead_then_leave_the_replica():
    sim = SimCluster(3, seed=2)
    services = SimServices(sim)
    services.run(3.0)
    services.registries["n2"].register_now("thermo")
    services.registries["n1"].register_now("thermo")
    assert services.run_until(lambda: len(services.registries["n0"].lookup("thermo")) == 2)
    sim.crash("n2")

    def dead_means_gone() -> None:
        for node_id in ("n0", "n1"):
            if sim.nodes[node_id].members()["n2"] == "dead":
                nodes = {i.node for i in services.registries[node_id].lookup("thermo")}
                assert nodes == {"n1"}

    services.run(30.0, check=dead_means_gone)
    assert all(sim.nodes[n].members()["n2"] == "dead" for n in ("n0", "n1"))
    for node_id in ("n0", "n1"):
        crdt = sim.nodes[node_id].engine.replica(REGISTRY, ORMap, value_type=LWWRegister)
        assert all(not key.startswith("n2~") for key in crdt), "n2's entry is still replicated"


def test_a_node_wrongly_declared_dead_registers_again_after_the_heal():
    sim = SimCluster(3, seed=3)
    services = SimServices(sim)
    services.run(3.0)
    services.registries["n2"].register_now("thermo")
    assert services.run_until(lambda: bool(services.registries["n0"].lookup("thermo")))
    sim.partition(["n0", "n1"], ["n2"])
    assert services.run_until(lambda: sim.nodes["n0"].members()["n2"] == "dead")
    assert services.registries["n0"].lookup("thermo") == ()
    sim.heal()
    assert services.run_until(
        lambda: all(len(r.lookup("thermo")) == 1 for r in services.registries.values()), 120.0
    )
    assert (
        services.registries["n0"].counters["removed_for_dead"]
        + services.registries["n1"].counters["removed_for_dead"]
        >= 1
    )


def test_pick_strategies_over_healthy_instances():
    services = SimServices(SimCluster(3, seed=4))
    services.run(3.0)
    registries = services.registries
    a = registries["n1"].register_now("svc", load=5)
    b = registries["n2"].register_now("svc", load=1)
    assert services.run_until(lambda: len(registries["n0"].lookup("svc")) == 2)
    n0 = registries["n0"]
    turns = [n0.pick("svc").id for _ in range(4)]
    assert sorted(turns[:2]) == sorted([a.id, b.id]) and turns[:2] == turns[2:]
    assert n0.pick("svc", "least_loaded").id == b.id
    assert {n0.pick("svc", "random").id for _ in range(50)} == {a.id, b.id}
    by_key = {k: n0.pick("svc", "consistent_hash", key=k).id for k in range(40)}
    assert set(by_key.values()) == {a.id, b.id}
    # every node maps a key to the same instance, even one that has an instance itself
    assert all(
        registries["n1"].pick("svc", "consistent_hash", key=k).id == v for k, v in by_key.items()
    )
    # prefer_local keeps the choice here; not when asked otherwise
    assert {registries["n1"].pick("svc").id for _ in range(4)} == {a.id}
    assert {registries["n1"].pick("svc", prefer_local=False).id for _ in range(4)} == {a.id, b.id}
    b.update(load=9)
    assert n0.pick("svc", "least_loaded").id == b.id  # not replicated yet: local view
    assert services.run_until(lambda: n0.pick("svc", "least_loaded").id == a.id)


def test_suspect_instances_are_picked_only_when_nothing_else_is_left():
    sim = SimCluster(3, seed=5)
    services = SimServices(sim)
    services.run(3.0)
    a = services.registries["n1"].register_now("svc")
    services.registries["n2"].register_now("svc")
    n0 = services.registries["n0"]
    assert services.run_until(lambda: len(n0.lookup("svc")) == 2)
    sim.crash("n2")
    assert services.run_until(lambda: sim.nodes["n0"].members()["n2"] == "suspect")
    assert len(n0.lookup("svc")) == 2  # suspect is not dead: lookup still lists it
    assert {n0.pick("svc").id for _ in range(4)} == {a.id}
    assert {n0.pick("svc", exclude={a.id}).node} == {"n2"}


def test_unregister_and_watch():
    services = SimServices(SimCluster(2, seed=6))
    services.run(3.0)
    seen: list[int] = []
    watch = services.registries["n0"].watch("svc", lambda found: seen.append(len(found)))
    registration = services.registries["n1"].register_now("svc")
    assert services.run_until(lambda: seen == [1])
    registration.unregister()
    registration.unregister()  # idempotent
    assert services.run_until(lambda: seen == [1, 0])
    watch.close()
    services.registries["n1"].register_now("svc")
    services.run(3.0)
    assert seen == [1, 0]


def test_bad_input_gets_typed_errors():
    services = SimServices(SimCluster(1, seed=7))
    registry = services.registries["n0"]
    with pytest.raises(ServiceNotFound):
        registry.pick("nobody")
    with pytest.raises(TypeError):
        registry.register_now("")
    with pytest.raises(TypeError):
        registry.register_now("svc", handler="not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        registry.register_now("svc", capabilities={1: "x"})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        registry.register_now("svc", meta={"x": object()})
    registration = registry.register_now("svc")
    with pytest.raises(ValueError):
        registry.pick("svc", strategy="fastest")
    with pytest.raises(ValueError):
        registry.pick("svc", strategy="consistent_hash")
    with pytest.raises(TypeError):
        registration.update(load="high")  # type: ignore[arg-type]
    # a malformed record from a peer is skipped and counted, never raised
    node = services.sim.nodes["n0"]
    handle = node.replica(REGISTRY, ORMap, value_type=LWWRegister)
    stamp = node.engine.timestamp()
    handle.update("rogue/1", lambda register: register.set(["three", "fields", 0], ts=stamp))
    services.pump()
    assert [i.id for i in registry.lookup("svc")] == [registration.id]
    assert registry.counters["malformed_records"] == 1


async def test_registry_on_three_real_nodes_forgets_a_left_and_a_killed_node():
    async with real_cluster(3) as nodes:
        await nodes[1].registry.register("thermo", capabilities={"unit": "C"})
        await nodes[2].registry.register("thermo", capabilities={"unit": "F"})
        await registered(nodes, "thermo", 2)
        assert [i.node for i in nodes[0].registry.lookup("thermo", where={"unit": "F"})] == ["n2"]
        await nodes[2].stop(leave=False)  # like kill -9
        await eventually(lambda: [i.node for i in nodes[0].registry.lookup("thermo")] == ["n1"], 20)
        await nodes[1].stop()  # graceful
        await eventually(lambda: nodes[0].registry.lookup("thermo") == (), 20)


def test_a_restarted_node_removes_the_instances_of_its_previous_session():
    sim = SimCluster(3, seed=8)
    services = SimServices(sim)
    services.run(3.0)
    services.registries["n2"].register_now("thermo")
    assert services.run_until(lambda: len(services.registries["n0"].lookup("thermo")) == 1)
    sim.crash("n2")
    sim.restart("n2", keep_state=True)  # its replicas survive, its registrations do not
    assert services.run_until(
        lambda: all(not r.lookup("thermo") for r in services.registries.values()), 60.0
    )
    assert services.registries["n2"].counters["removed_stale_session"] == 1
