"""Caches: local, replicated and partitioned modes, single-flight, LRU, TTL, invalidation."""

from __future__ import annotations

import asyncio

import pytest
from services_real import eventually, fast, real_cluster, registered
from services_sim import SimServices

from crdts import LWWMap
from foundation_p2p.node import Node
from foundation_p2p.services.cache import CACHE_REPLICA, COMPACT_EVERY, Cache
from foundation_p2p.services.messaging import RemoteError
from simulations.cluster import SimCluster

pytestmark = pytest.mark.timeout(60)


class FakeClock:
    """A clock the test moves (TTLs without sleeping)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_local_mode_lru_ttl_and_cluster_wide_invalidate():
    clock = FakeClock()
    async with real_cluster(2) as nodes:
        caches = [n.open_cache("sessions", mode="local", max_entries=2, clock=clock) for n in nodes]
        await registered(nodes, "sys.cache/sessions", 2)
        await caches[0].put("a", 1)
        await caches[0].put("b", 2)
        assert await caches[0].get("a") == 1  # "a" is now the most recent
        await caches[0].put("c", 3)  # evicts "b", the least recently used
        assert [await caches[0].get(k) for k in "abc"] == [1, None, 3]
        assert caches[0].stats["evictions"] == 1
        assert await caches[1].get("a") is None  # local: not shared
        await caches[1].put("a", "n1's")
        await caches[0].put("t", "short", ttl=5)
        clock.now += 4.9
        assert await caches[0].get("t") == "short"
        clock.now += 0.2
        assert await caches[0].get("t", "gone") == "gone"
        await caches[1].invalidate("a")  # reaches n0's local copy too
        await eventually(lambda: "a" not in caches[0]._local)
        assert await caches[1].get("a") is None


async def test_single_flight_computes_once_and_an_error_reaches_every_waiter_unpoisoned():
    async with real_cluster(1) as (node,):
        cache = node.open_cache("lookups", mode="local")
        release = asyncio.Event()
        calls = 0

        async def compute() -> dict[str, int]:
            nonlocal calls
            calls += 1
            await release.wait()
            return {"answer": 42}

        waiters = [asyncio.create_task(cache.get_or_compute("k", compute)) for _ in range(10)]
        await asyncio.sleep(0.01)
        release.set()
        assert await asyncio.gather(*waiters) == [{"answer": 42}] * 10
        assert calls == 1 and cache.stats["coalesced"] == 9
        assert await cache.get_or_compute("k", compute) == {"answer": 42} and calls == 1

        failing = asyncio.Event()

        async def broken() -> int:
            await failing.wait()
            raise ConnectionError("database down")

        waiters = [asyncio.create_task(cache.get_or_compute("bad", broken)) for _ in range(5)]
        await asyncio.sleep(0.01)
        failing.set()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results)
        assert await cache.get("bad", "absent") == "absent"  # no poisoned entry
        assert await cache.get_or_compute("bad", lambda: "recovered") == "recovered"
        with pytest.raises(TypeError):  # a computed value that cannot be cached
            await cache.get_or_compute("odd", lambda: object())
        assert await cache.get("odd") is None


async def test_replicated_mode_on_three_nodes():
    async with real_cluster(3) as nodes:
        caches = [n.cache for n in nodes]
        await caches[0].put("config", {"mode": "auto"}, ttl=60)
        await caches[1].put(("user", 7), "ada")
        await eventually(lambda: all(len(c) == 2 for c in caches))
        assert await caches[2].get("config") == {"mode": "auto"}
        assert await caches[2].get(["user", 7]) == "ada"
        assert await caches[2].get_or_compute("config", lambda: "not called") == {"mode": "auto"}
        await caches[2].invalidate("config")
        await eventually(lambda: all(len(c) == 1 for c in caches))
        assert await caches[0].get("config") is None
        assert caches[0].stats["misses"] == 1 and caches[2].stats["hits"] == 3


async def test_partitioned_mode_routes_to_owners_keeps_near_copies_and_hands_over():
    async with real_cluster(3) as nodes:
        caches = [n.open_cache("parts", mode="partitioned") for n in nodes]
        await registered(nodes, "sys.cache/parts", 3)
        for i in range(30):
            await caches[0].put(f"k{i}", i)
        assert sum(len(c) for c in caches) == 30
        assert all(len(c) > 0 for c in caches), "keys are spread over the owners"
        assert [await caches[2].get(f"k{i}") for i in range(30)] == list(range(30))
        hits = caches[2].stats["hits"]
        assert await caches[2].get("k3") == 3 and caches[2].stats["hits"] == hits + 1
        await caches[1].put("k3", "new")  # the owner tells near-caches to drop their copies
        await eventually(lambda: "k3" not in caches[2]._near or caches[1]._owner("k3") == "n2")
        assert await caches[2].get("k3") == "new"
        await caches[2].invalidate("k4")
        assert await caches[0].get("k4") is None
        await nodes[2].stop()  # graceful: n2 hands its keys over
        await eventually(lambda: sum(len(c) for c in caches[:2]) == 29)
        assert [await caches[0].get(f"k{i}") for i in (0, 1, 2, 5, 29)] == [0, 1, 2, 5, 29]


async def test_bad_input():
    async with real_cluster(2) as nodes:
        with pytest.raises(ValueError):
            nodes[0].open_cache("x", mode="distributed")
        with pytest.raises(ValueError):
            nodes[0].open_cache("y", max_entries=0)
        cache = nodes[0].open_cache("z", mode="partitioned")
        with pytest.raises(ValueError):
            nodes[0].open_cache("z", mode="local")  # already open in another mode
        with pytest.raises(TypeError):
            await cache.put(1.5, "float keys conflate with ints")
        with pytest.raises(TypeError):
            await cache.put("k", {1, 2})
        with pytest.raises(ValueError):
            await cache.put("k", 1, ttl=-1)
        other = nodes[1].open_cache("z", mode="partitioned")
        await registered(nodes, "sys.cache/z", 2)
        messaging = nodes[1]._cluster_services().messaging
        with pytest.raises(RemoteError, match="ValueError"):  # a malformed peer request
            await messaging.request_node("n0", "sys.cache/z", ["explode", "k"], 1.0)
        await other.put("still", "works")
        assert await cache.get("still") == "works"


def sim_caches(seed: int, name: str) -> tuple[SimCluster, SimServices, dict[str, Cache]]:
    """Three simulated nodes, each with the replicated cache `name` on the virtual clock."""
    sim = SimCluster(3, seed=seed)
    services = SimServices(sim)
    caches = {
        n: Cache(sim.nodes[n], services.registries[n], None, name, clock=lambda: sim.now)
        for n in sim.nodes
    }
    return sim, services, caches


def test_replicated_entries_converge_after_a_partition_in_the_simulator():
    sim, services, caches = sim_caches(seed=11, name="sim")
    services.run(3.0)
    sim.partition(["n0", "n1"], ["n2"])

    async def writes() -> None:
        await caches["n0"].put("k", "left side")
        await caches["n2"].put("k", "right side")
        await caches["n2"].put("short", 1, ttl=2.0)

    services.run(1.0)
    asyncio.run(writes())
    services.run(5.0)
    sim.heal()
    assert services.run_until(lambda: sim.converged(), 120.0)
    values = {asyncio.run(c.get("k")) for c in caches.values()}
    assert values == {"right side"}  # the later write wins everywhere
    assert all(asyncio.run(c.get("short")) is None for c in caches.values())  # expired


def test_replicated_expired_entries_are_compacted_and_never_come_back():
    """A cache of short-lived keys must not grow for good: each node's writes compact the
    shared replica every COMPACT_EVERY seconds, dropping expired entries. Anti-entropy does
    not bring them back (the causal context remembers them), and the replicas converge."""
    sim, services, caches = sim_caches(seed=5, name="sess")
    services.run(3.0)
    for i in range(200):
        asyncio.run(caches[f"n{i % 3}"].put(f"s{i}", i, ttl=1.0))
    asyncio.run(caches["n0"].put("kept", "forever"))
    services.run(2.0)
    raw = {n: sim.nodes[n].engine.replica(CACHE_REPLICA, LWWMap) for n in sim.nodes}
    assert all(len(r.value) == 201 for r in raw.values())  # held, though expired
    services.run(COMPACT_EVERY)
    for n, cache in caches.items():  # the next write on each node compacts
        asyncio.run(cache.put(f"last-{n}", n))
        assert cache.stats["compacted"] == 200
    assert services.run_until(lambda: sim.converged(), 30.0)
    services.run(10.0)  # anti-entropy rounds after compaction bring nothing back
    assert all(
        set(r.value) == {("sess", "kept"), *((("sess", f"last-{n}")) for n in sim.nodes)}
        for r in raw.values()
    )
    assert asyncio.run(caches["n2"].get("kept")) == "forever"


async def test_partitioned_keys_move_to_a_node_that_joins():
    async with real_cluster(2) as nodes:
        caches = [n.open_cache("grow", mode="partitioned") for n in nodes]
        await registered(nodes, "sys.cache/grow", 2)
        for i in range(20):
            await caches[0].put(i, f"v{i}")
        assert sum(len(c) for c in caches) == 20
        joiner = Node(cluster="svc", node_id="n2", seeds=[nodes[0].address], config=fast())
        await joiner.start()
        try:
            cache = joiner.open_cache("grow", mode="partitioned")
            await registered([*nodes, joiner], "sys.cache/grow", 3)
            await eventually(
                lambda: len(cache) > 0 and sum(len(c) for c in caches) + len(cache) == 20
            )
            assert [await cache.get(i) for i in range(20)] == [f"v{i}" for i in range(20)]
            assert caches[0].stats["handed_over"] + caches[1].stats["handed_over"] == len(cache)
        finally:
            await joiner.stop()
