"""Eager push and push-pull anti-entropy between engines."""

from __future__ import annotations

import pytest
from pycrdt import Map

from crdts import AWORSet, LWWMap, ORMap, PNCounter, YDoc
from foundation_p2p.config import Config
from foundation_p2p.engine import LocalProtocolError, PushAcked, ReplicaChanged, encode
from foundation_p2p.engine.events import Send
from foundation_p2p.engine.messages import SyncDelta, SyncDigest
from foundation_p2p.engine.replication import BURST_GAP, BURST_HOLD


def write(net, node, name, cls, mutate, **options):
    """Apply a mutation to a replica of `node` and hand the delta to its engine."""
    replica = net[node].replica(name, cls, **options)
    net.take(node, net[node].local_write(name, mutate(replica), net.now))
    return replica


@pytest.fixture
def trio(engine_net):
    net = engine_net(["a", "b", "c"])
    net.join_all("a")
    net.run(3.0)
    return net


def test_a_local_write_is_pushed_to_every_peer_of_a_small_cluster(trio):
    write(trio, "a", "hits", PNCounter, lambda r: r.increment(3))
    trio.sent.clear()
    trio.run(0.05)  # one push delay
    pushes = [(src, s) for src, s in trio.sent if isinstance(s.message, SyncDelta)]
    assert {s.dst for src, s in pushes if src == "a" and s.message.is_push} == {"b", "c"}
    assert trio["b"].replication.replicas["hits"].value == 3
    assert trio["c"].replication.replicas["hits"].value == 3
    assert any(isinstance(e, PushAcked) for _, n, e in trio.events if n == "a")
    assert any(
        isinstance(e, ReplicaChanged) and e.origin == "a" for _, n, e in trio.events if n == "b"
    )


def test_writes_within_the_push_delay_travel_as_one_batch(trio):
    trio.sent.clear()
    for i in range(50):
        write(trio, "a", "seen", AWORSet, lambda r, i=i: r.add(f"device-{i}"))
    trio.run(0.05)
    pushes = [s for src, s in trio.sent if src == "a" and isinstance(s.message, SyncDelta)]
    assert len(pushes) == 2  # one batch, to each of two peers
    assert len(trio["c"].replication.replicas["seen"]) == 50


def test_anti_entropy_repairs_lost_pushes(trio):
    trio.filter = lambda src, send: (
        not isinstance(send.message, SyncDelta) or not send.message.is_push
    )
    write(trio, "a", "config", LWWMap, lambda r: r.set("mode", "auto", trio["a"].timestamp()))
    trio.run(0.1)
    assert "config" not in trio["b"].replication.replicas  # the push was dropped
    trio.run(5.0)
    assert trio["b"].replication.replicas["config"].value == {"mode": "auto"}
    assert trio["c"].replication.replicas["config"].value == {"mode": "auto"}


def test_a_converged_pair_exchanges_only_digest_hashes(trio):
    write(trio, "a", "hits", PNCounter, lambda r: r.increment(1))
    trio.run(5.0)
    trio.sent.clear()
    trio.run(5.0)
    digests = [s.message for _, s in trio.sent if isinstance(s.message, SyncDigest)]
    deltas = [s.message for _, s in trio.sent if isinstance(s.message, SyncDelta)]
    assert digests and not deltas
    assert all(d.digests[0].tag.endswith("#") for d in digests)  # hashes, not full digests
    assert max(len(encode(d)) for d in digests) < 200


def test_large_divergence_is_chunked_within_the_byte_budget(engine_net):
    config = Config.simulation(anti_entropy_budget_bytes=64 * 1024, chunk_entries=500)
    net = engine_net(["a", "b"], config)
    big = net["a"].replica("big", LWWMap)
    for i in range(20_000):
        big.set(f"key-{i}", i, net["a"].timestamp(0.0))
    net.join_all("a")
    net.run(60.0)
    assert net["b"].replication.replicas["big"] == big
    sizes = [len(encode(s.message)) for _, s in net.sent if isinstance(s.message, SyncDelta)]
    assert len(sizes) > 5 and max(sizes) < 64 * 1024 + 16 * 1024


def test_removes_and_concurrent_adds_converge_add_wins(trio):
    write(trio, "a", "online", AWORSet, lambda r: r.add("sensor-1"))
    trio.run(1.0)
    trio.cut |= {(x, y) for x in "abc" for y in "abc" if x != y}
    write(trio, "a", "online", AWORSet, lambda r: r.remove("sensor-1"))
    write(trio, "b", "online", AWORSet, lambda r: r.add("sensor-1"))
    write(trio, "c", "online", AWORSet, lambda r: r.add("sensor-2"))
    trio.run(1.0)
    trio.cut.clear()
    trio.run(10.0)
    values = {trio[n].replication.replicas["online"].value for n in "abc"}
    assert values == {frozenset({"sensor-1", "sensor-2"})}


def test_yjs_documents_replicate(trio):
    doc = trio["a"].replica("notes", YDoc)
    root = doc.get("m", Map)
    trio.take(
        "a", trio["a"].local_write("notes", doc.transact(lambda _: root.__setitem__("k", "v")))
    )
    trio.run(5.0)
    for node in "bc":
        replica = trio[node].replication.replicas["notes"]
        assert replica.get("m", Map).to_py() == {"k": "v"}


def test_ormap_of_counters_replicates(trio):
    write(
        trio,
        "b",
        "visits",
        ORMap,
        lambda r: r.update("line-3", lambda c: c.increment(2)),
        value_type=PNCounter,
    )
    write(
        trio,
        "c",
        "visits",
        ORMap,
        lambda r: r.update("line-3", lambda c: c.increment(5)),
        value_type=PNCounter,
    )
    trio.run(5.0)
    assert {trio[n].replication.replicas["visits"].value["line-3"] for n in "abc"} == {7}


def test_asking_for_a_replica_with_another_type_is_a_local_error(trio):
    trio["a"].replica("hits", PNCounter)
    with pytest.raises(LocalProtocolError, match="is a PNCounter"):
        trio["a"].replica("hits", AWORSet)
    with pytest.raises(LocalProtocolError, match="read-only"):
        trio["a"].replica("sys/members", PNCounter)
    with pytest.raises(LocalProtocolError, match="not a replicable"):
        trio["a"].replica("x", dict)


def test_pushes_relay_through_a_large_cluster_and_anti_entropy_completes_it(engine_net):
    names = [f"n{i}" for i in range(40)]
    net = engine_net(names, Config.simulation())
    net.join_all("n0")
    net.run(30.0)
    assert all(len(net[n].members()) == 40 for n in names)
    write(net, "n5", "hits", PNCounter, lambda r: r.increment(1))
    net.run(0.1)
    # an epidemic with fanout 3 misses each node with probability ~e^-3: most, not all
    reached = sum(1 for n in names if "hits" in net[n].replication.replicas)
    assert reached >= 34
    assert net["n5"].counters["push.batches"] == 1
    net.run(10.0)
    assert all(net[n].replication.replicas["hits"].value == 1 for n in names)


def burst_probe(trio):
    """(write_at(now), pushes_at(now)): a counter write on node a, and the pushes a's timers
    send at `now`."""
    a = trio["a"]

    def write_at(now):
        trio.take("a", a.local_write("hits", a.replica("hits", PNCounter).increment(1), now))

    def pushes_at(now):
        outputs = a.tick(now)
        trio.take("a", outputs)
        return [o for o in outputs if isinstance(o, Send) and isinstance(o.message, SyncDelta)]

    return write_at, pushes_at


def test_a_write_right_after_a_push_waits_a_little_to_join_the_rest_of_its_burst(trio):
    delay = trio.config.push_delay
    write_at, pushes_at = burst_probe(trio)
    start = trio.now + 1.0
    write_at(start)  # a lone write: pushed as soon as it is due
    assert len(pushes_at(start + delay)) == 2
    second = start + delay + BURST_GAP / 8  # one push in flight is not yet a burst
    write_at(second)
    assert len(pushes_at(second + delay)) == 2
    write_at(second + delay)  # right after a second unacknowledged push: a burst
    assert pushes_at(second + delay + BURST_GAP / 4) == []
    write_at(second + delay + BURST_GAP / 2)  # joins the held push
    held = pushes_at(second + delay + max(delay, BURST_HOLD))
    assert len(held) == 2 and all(s.message.deltas for s in held)
    later = start + 0.1  # after a pause, a lone write again
    write_at(later)
    assert len(pushes_at(later + delay)) == 2


def test_a_write_right_after_an_acknowledged_push_is_not_held(trio):
    delay = trio.config.push_delay
    write_at, pushes_at = burst_probe(trio)
    start = trio.now + 1.0
    for i in range(3):  # a writer that waits until its previous write is seen: never a burst
        at = start + i * BURST_GAP / 4
        write_at(at)
        assert len(pushes_at(at + delay)) == 2
        trio.flush()  # both peers merge it and acknowledge
    assert trio["b"].replication.replicas["hits"].value == 3
