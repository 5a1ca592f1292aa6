"""SharedState on the simulator: the value codec, rejected writes, transactions, counters, text,
lists, observers and write levels, all on the virtual clock (no sleeps, no sockets)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdts import YDoc
from foundation_p2p.config import Config
from foundation_p2p.engine import ReplicaChanged
from foundation_p2p.engine.events import WritesAcked
from foundation_p2p.services.kvlayout import KeyValueArray
from foundation_p2p.services.lanes import LaneKeyValues
from foundation_p2p.services.state import (
    INT64_MAX,
    INT64_MIN,
    LAYOUTS,
    Change,
    ConsistencyTimeout,
    SharedState,
    decode_value,
    encode_value,
)
from simulations import SimCluster
from tests.yrs_vectors import BAD, BAD_BASE, POISON, POISON_BASE

VALUES = [
    21.5,
    1,
    0,
    -1,
    INT64_MAX,
    INT64_MIN,
    2**53 + 1,  # a float would round this
    True,
    False,
    None,
    "",
    "héllo 😀",
    b"",
    b"\x00\xff",
    [],
    {},
    {"a": [1, 2]},
    [1, "a", b"b", None, 2.5, {"n": {"m": [True]}}],
    {1: "int key", "s": "str key", b"k": "bytes key"},
    float("inf"),
    -0.0,
]


@pytest.fixture(params=LAYOUTS, autouse=True)
def layout(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs once per key layout: the nodes' states are created with it."""
    create = SharedState._create.__func__  # type: ignore[attr-defined]

    def create_with_layout(cls: type[SharedState], name: str, host: object) -> SharedState:
        state: SharedState = create(cls, name, host)
        state._choose_layout(request.param)
        return state

    monkeypatch.setattr(SharedState, "_create", classmethod(create_with_layout))
    return str(request.param)


def cluster(nodes: int = 2, seed: int = 1, **config: object) -> SimCluster:
    sim = SimCluster(nodes, seed=seed, config=Config.simulation(**config))
    sim.run_for(3.0)
    return sim


def same_value(a: object, b: object) -> bool:
    """Equal and of the same types all the way down (True is not 1, 1.0 is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)  # type: ignore[union-attr,index]
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)  # type: ignore[arg-type]
    return a == b


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_every_value_type_reads_back_exactly_here_and_on_a_peer(value: object) -> None:
    sim = cluster()
    a, b = (sim.node(n).shared_state("line-3") for n in ("n0", "n1"))
    a["v"] = value
    assert same_value(a["v"], value)
    sim.complete(a.synced(timeout=2.0))
    assert same_value(b["v"], value)
    assert same_value(b.to_dict(), {"v": value})


def test_tuples_and_bytearrays_read_back_as_lists_and_bytes() -> None:
    sim = cluster(1)
    s = sim.node("n0").shared_state("x")
    s["t"] = (1, (2, 3))
    s["b"] = bytearray(b"ab")
    assert same_value(s["t"], [1, [2, 3]])
    assert same_value(s["b"], b"ab")


msgpackable = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(INT64_MIN, INT64_MAX)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=5) | st.integers(INT64_MIN, INT64_MAX), children, max_size=4
        )
    ),
    max_leaves=12,
)


@given(msgpackable)
def test_codec_round_trips_every_msgpackable_value(value: object) -> None:
    assert same_value(decode_value(encode_value(value, 1 << 20)), value)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(msgpackable)
def test_values_survive_the_yjs_document(layout: str, value: object) -> None:
    sim = SimCluster(1, seed=0)
    s = sim.node("n0").shared_state("x")
    s["k"] = value
    copy = YDoc("copy")
    copy.merge(sim.node("n0").engine.replication.replicas["state/x"].full_update())
    from pycrdt import Array, Map

    if layout == "kv":
        stored = KeyValueArray(copy.get("kv", Array)).get("k")
    elif layout == "lanes":
        stored = LaneKeyValues(copy.doc, 0).get("k")
    else:
        stored = copy.get("data", Map)["k"]
    assert same_value(decode_value(stored), value)


def deep(levels: int) -> list[object]:
    value: list[object] = []
    for _ in range(levels):
        value = [value]
    return value


BAD_WRITES = [
    (lambda s: s.__setitem__(1, "v"), TypeError),
    (lambda s: s.__setitem__(b"k", "v"), TypeError),
    (lambda s: s.__setitem__("\ud800", "v"), ValueError),
    (lambda s: s.__setitem__("k", object()), TypeError),
    (lambda s: s.__setitem__("k", {1, 2}), TypeError),
    (lambda s: s.__setitem__("k", 2**63), ValueError),
    (lambda s: s.__setitem__("k", -(2**63) - 1), ValueError),
    (lambda s: s.__setitem__("k", {"deep": [1, [2**64]]}), ValueError),
    (lambda s: s.__setitem__("k", {(1, 2): "tuple key"}), TypeError),
    (lambda s: s.__setitem__("k", "\udfff"), ValueError),
    (lambda s: s.__setitem__("k", b"x" * 2000), ValueError),  # max_value_bytes=1024 below
    (lambda s: s.__setitem__("k", deep(70)), ValueError),
    (lambda s: s.__setitem__("k", True.__class__), TypeError),
    (lambda s: s.update({"ok": 1, "bad": object()}), TypeError),
    (lambda s: s.counter("c").increment(1.5), TypeError),
    (lambda s: s.counter("c").increment(True), TypeError),
    (lambda s: s.counter("c").increment(2**63), ValueError),
    (lambda s: s.text("t").insert(5, "x"), IndexError),
    (lambda s: s.text("t").insert(0, b"x"), TypeError),
    (lambda s: s.text("t").delete(0, 3), IndexError),
    (lambda s: s.list("l").append(object()), TypeError),
    (lambda s: s.list("l").insert(3, 1), IndexError),
    (lambda s: s.list("l").__delitem__(0), IndexError),
    (lambda s: s.__delitem__("missing"), KeyError),
    (lambda s: s.counter(""), ValueError),
    (lambda s: s.text(7), TypeError),
]


@pytest.mark.parametrize("write,error", BAD_WRITES)
def test_a_rejected_write_leaves_no_trace_here_or_on_peers(layout, write, error) -> None:  # type: ignore[no-untyped-def]
    sim = cluster(max_value_bytes=1024)
    a, b = (sim.node(n).shared_state("line-3") for n in ("n0", "n1"))
    a["kept"] = 1
    sim.complete(a.synced(timeout=2.0))
    engine = sim.node("n0").engine
    doc = engine.replication.replicas["state/line-3"]
    before = (doc.full_update(), engine.write_seq, len(sim.writes))
    events = len(sim.node("n0").events)
    with pytest.raises(error):
        write(a)
    assert (doc.full_update(), engine.write_seq, len(sim.writes)) == before
    assert not any(isinstance(e, ReplicaChanged) for _, e in sim.node("n0").events[events:])
    sim.run_for(3.0)
    assert b.to_dict() == {"kept": 1} and a.to_dict() == {"kept": 1}
    peer = sim.node("n1").engine.replication.replicas["state/line-3"]
    if layout == "kv":  # yrs encodes an entry's two fields in no fixed order: compare the
        assert peer.fingerprint() == doc.fingerprint()  # structs and delete set instead
    else:
        assert peer == doc


def test_an_overflowing_counter_total_is_refused_before_anything_changes() -> None:
    sim = cluster(1)
    c = sim.node("n0").shared_state("s").counter("c")
    c.increment(INT64_MAX)
    with pytest.raises(ValueError):
        c.increment(1)
    assert c.value == INT64_MAX


def test_dict_like_reads() -> None:
    sim = cluster(1)
    s = sim.node("n0").shared_state("s")
    s.update({"a": 1, "b": 2})
    del s["a"]
    assert len(s) == 1 and list(s) == ["b"] and s.items() == [("b", 2)]
    assert s.get("missing", 0) == 0 and "b" in s and "a" not in s and 3 not in s
    with pytest.raises(KeyError):
        s["a"]
    assert s.pop("b") == 2 and s.pop("b", None) is None and s.to_dict() == {}


def test_a_transaction_is_one_delta_and_reads_its_own_writes() -> None:
    sim = cluster()
    a = sim.node("n0").shared_state("s")
    engine = sim.node("n0").engine
    seq = engine.write_seq
    with a.transaction():
        a["x"] = 1
        a["y"] = 2
        del a["x"]
        assert a.get("x") is None and a["y"] == 2 and a.to_dict() == {"y": 2}
        a.counter("c").increment(3)
        a.list("l").append("e")
        a.text("t").append("hi")
        with a.transaction():  # nested: part of the outer one
            a["z"] = 3
        assert engine.write_seq == seq  # nothing applied yet
    assert engine.write_seq == seq + 1
    sim.complete(a.synced(timeout=2.0))
    b = sim.node("n1").shared_state("s")
    assert b.to_dict() == {"y": 2, "z": 3}
    assert b.counter("c").value == 3 and b.list("l") == ["e"] and b.text("t") == "hi"


def test_a_transaction_that_raises_applies_nothing() -> None:
    sim = cluster(1)
    s = sim.node("n0").shared_state("s")
    s["x"] = 1
    with pytest.raises(RuntimeError), s.transaction():
        s["x"] = 2
        s["y"] = 3
        raise RuntimeError("abandon")
    assert s.to_dict() == {"x": 1}


def test_concurrent_counter_increments_all_count_after_a_partition() -> None:
    sim = cluster(3)
    sim.partition(["n0"], ["n1", "n2"])
    for i, node in enumerate(("n0", "n1", "n2")):
        counter = sim.node(node).shared_state("s").counter("visits")
        counter.increment(i + 1)
        counter.increment(10)
    sim.node("n2").shared_state("s").counter("visits").decrement(4)
    sim.heal()
    assert sim.run_until(lambda s: s.converged(), timeout=30.0)
    for node in ("n0", "n1", "n2"):
        assert sim.node(node).shared_state("s").counter("visits").value == 1 + 2 + 3 + 30 - 4


def test_text_and_list_edits_converge_with_character_indexes() -> None:
    sim = cluster()
    a, b = (sim.node(n).shared_state("doc") for n in ("n0", "n1"))
    a.text("notes").insert(0, "é😀x")
    a.text("notes").insert(2, "Z")
    a.text("notes").delete(0, 1)
    assert str(a.text("notes")) == "😀Zx" and len(a.text("notes")) == 3
    a.list("events").extend([1, {"k": b"v"}])
    a.list("events").insert(0, "first")
    del a.list("events")[-1]
    sim.complete(a.synced(timeout=2.0))
    sim.partition(["n0"], ["n1"])
    a.text("notes").append("!")
    b.text("notes").insert(0, ">")
    b.list("events").append(2**40)
    sim.heal()
    assert sim.run_until(lambda s: s.converged(), timeout=30.0)
    for s in (a, b):
        assert s.text("notes") == ">😀Zx!"
        assert same_value(s.list("events").to_list(), ["first", 1, 2**40])
    a.text("notes").clear()
    a.list("events").clear()
    assert str(a.text("notes")) == "" and len(a.list("events")) == 0


def test_observers_fire_once_per_change_with_the_origin() -> None:
    sim = cluster()
    a, b = (sim.node(n).shared_state("s") for n in ("n0", "n1"))
    seen_a: list[Change] = []
    seen_b: list[Change] = []
    a.observe(seen_a.append)
    sub = b.observe(seen_b.append)
    a["x"] = 1
    assert seen_a == [Change(frozenset({"x"}), "local")]
    sim.complete(a.synced(timeout=2.0))
    sim.run_for(2.0)  # anti-entropy rounds change nothing: no further reports
    assert seen_b == [Change(frozenset({"x"}), "n0")]
    b.counter("c").increment()
    b.text("t").append("x")
    sim.complete(b.synced(timeout=2.0))
    assert seen_b[1:] == [
        Change(frozenset(), "local", counters=frozenset({"c"})),
        Change(frozenset(), "local", texts=frozenset({"t"})),
    ]
    # both writes left n1 in one push batch, so n0 merged them at once: one report
    assert seen_a[1:] == [
        Change(frozenset(), "n1", counters=frozenset({"c"}), texts=frozenset({"t"}))
    ]
    sub.close()
    sub.close()
    a["y"] = 2
    sim.complete(a.synced(timeout=2.0))
    assert len(seen_b) == 3


def test_a_failing_observer_does_not_stop_the_others_or_the_write() -> None:
    sim = cluster(1)
    s = sim.node("n0").shared_state("s")
    seen: list[Change] = []
    s.observe(lambda change: 1 / 0)
    s.observe(seen.append)
    s["x"] = 1
    assert s["x"] == 1 and len(seen) == 1


def test_write_levels_count_acknowledgements() -> None:
    sim = cluster(3)
    a = sim.node("n0").shared_state("s")
    sim.complete(a.set("k", 1, write="all", timeout=2.0))
    sim.crash("n2")
    sim.complete(a.set("k", 2, write="majority", timeout=2.0))  # 2 of 3
    with pytest.raises(ConsistencyTimeout) as caught:
        sim.complete(a.set("k", 3, write="all", timeout=2.0))
    assert caught.value.needed == 3 and caught.value.acked == frozenset({"n1"})
    sim.crash("n1")
    started = sim.now
    with pytest.raises(ConsistencyTimeout):
        sim.complete(a.set("k", 4, write="majority", timeout=2.0))  # 1 of 3
    assert sim.now == pytest.approx(started + 2.0)
    assert a["k"] == 4  # the write stays applied ...
    sim.restart("n1", keep_state=True)
    sim.restart("n2", keep_state=False)
    assert sim.run_until(lambda s: s.converged(), timeout=60.0)
    for node in ("n1", "n2"):  # ... and still replicates
        assert sim.node(node).shared_state("s")["k"] == 4


def test_majority_waits_for_a_late_acknowledgement() -> None:
    sim = cluster(3)
    sim.hold("n0", "n1")
    sim.hold("n0", "n2")
    sim.at(sim.now + 0.5, lambda: sim.release("n0", "n1"))
    a = sim.node("n0").shared_state("s")
    started = sim.now
    sim.complete(a.set("k", 1, write="majority", timeout=2.0))
    assert 0.5 <= sim.now - started < 1.0


def test_synced_covers_a_peer_that_missed_the_push() -> None:
    sim = cluster(3)
    a = sim.node("n0").shared_state("s")
    sim.partition_oneway(["n0"], ["n2"])
    a["k"] = 1
    sim.run_for(0.5)
    sim.heal()  # n2 lost the push: anti-entropy brings it, and an equal copy counts as an ack
    sim.complete(a.synced(timeout=10.0))
    assert sim.node("n2").shared_state("s")["k"] == 1


def test_bad_write_level_and_set_inside_a_transaction_are_refused() -> None:
    sim = cluster(1)
    s = sim.node("n0").shared_state("s")
    with pytest.raises(ValueError):
        sim.complete(s.set("k", 1, write="quorum"))
    with pytest.raises(RuntimeError), s.transaction():
        sim.complete(s.set("k", 1))
    assert "k" not in s


def test_wait_for_sees_remote_changes_and_times_out() -> None:
    sim = cluster()
    a, b = (sim.node(n).shared_state("s") for n in ("n0", "n1"))
    sim.at(sim.now + 1.0, lambda: a.__setitem__("ready", "yes"))
    assert sim.complete(b.wait_for(lambda s: s.get("ready"), timeout=5.0)) == "yes"
    started = sim.now
    with pytest.raises(TimeoutError):
        sim.complete(b.wait_for(lambda s: s.get("never"), timeout=3.0))
    assert sim.now == pytest.approx(started + 3.0)


def test_one_object_per_name_and_node_across_restarts() -> None:
    sim = cluster()
    node = sim.node("n0")
    s = node.shared_state("s")
    assert node.shared_state("s") is s and SharedState("s", node=node) is s
    assert node.shared_state("other") is not s
    s["k"] = 1
    sim.complete(s.synced(timeout=2.0))
    sim.crash("n0")
    with pytest.raises(RuntimeError):
        s["k"] = 2
    sim.restart("n0", keep_state=False)  # rejoins empty and is refilled by n1
    assert sim.complete(s.wait_for(lambda st: st.get("k") == 1, timeout=10.0))
    s["k"] = 3
    sim.complete(s.synced(timeout=2.0))
    assert sim.node("n1").shared_state("s")["k"] == 3


def test_a_rewritten_key_does_not_grow_the_document() -> None:
    sim = cluster(1)
    s = sim.node("n0").shared_state("s")
    s["k"] = "x" * 100
    small = s.size_bytes()
    for i in range(2000):
        s["k"] = f"{i:03d}" + "x" * 97
    assert s.size_bytes() < small + 2000  # deleted values are collected; ids stay


def test_bad_names_are_refused() -> None:
    sim = cluster(1)
    for bad, error in (("", ValueError), (5, TypeError), ("x" * 201, ValueError)):
        with pytest.raises(error):
            sim.node("n0").shared_state(bad)  # type: ignore[arg-type]


def test_the_engine_reports_which_peers_hold_which_writes() -> None:
    sim = cluster(3)
    node = sim.node("n0")
    s = node.shared_state("s")
    s["a"] = 1
    first = node.engine.write_seq
    s["b"] = 2
    last = node.engine.write_seq
    assert last == first + 1
    sim.run_for(0.5)
    acks = [e for _, e in node.events if isinstance(e, WritesAcked)]
    for peer in ("n1", "n2"):
        ranges = [(e.first, e.last) for e in acks if e.node == peer and e.name == "state/s"]
        assert any(lo <= first and last <= hi for lo, hi in ranges), (peer, ranges)
    assert all(e.name == "state/s" for e in acks)  # no acks for replicas we never wrote


def test_synced_is_not_held_up_by_writes_to_other_replicas_between() -> None:
    sim = cluster(2, anti_entropy_interval=600.0)  # acknowledgements from pushes only
    sim.run_for(1.0)
    s = sim.node("n0").shared_state("s")
    other = sim.node("n0").shared_state("other")
    s["a"] = 1
    sim.run_for(0.5)
    other["x"] = 1  # a write to another replica, pushed on its own, between two of ours
    sim.run_for(0.5)
    s["b"] = 2
    started = sim.now
    sim.complete(s.synced(timeout=2.0))
    assert sim.now - started < 0.1


def test_a_replica_pushed_in_several_messages_is_not_acknowledged_by_one_of_them() -> None:
    from crdts import GCounter, LWWMap

    sim = cluster(2, chunk_entries=1, anti_entropy_budget_bytes=64, anti_entropy_interval=600.0)
    node = sim.node("n0")
    node.replica("hits", GCounter).increment(1)  # one message: acknowledged
    sim.run_for(0.5)
    big = node.replica("big", LWWMap)
    for i in range(5):
        big.set(f"key-{i}", "x" * 40)  # pushed together: too big for one message
    sim.run_for(0.5)
    named = {e.name for _, e in node.events if isinstance(e, WritesAcked)}
    assert named == {"hits"}
    assert sim.node("n1").replica("big", LWWMap).value == big.value  # all the pieces arrived


OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["set", "delete", "transaction"]),
        st.sampled_from(["a", "b", "c"]),
        msgpackable,
    ),
    max_size=12,
)


@given(OPERATIONS)
def test_a_state_behaves_like_a_dict_here_and_on_a_peer(operations: list) -> None:  # type: ignore[type-arg]
    sim = SimCluster(2, seed=0)
    sim.run_for(2.0)
    s, peer = sim.node("n0").shared_state("m"), sim.node("n1").shared_state("m")
    model: dict[str, object] = {}
    for kind, key, value in operations:
        if kind == "set":
            s[key] = value
            model[key] = value
        elif kind == "delete" and key in model:
            del s[key]
            del model[key]
        elif kind == "transaction":
            with s.transaction():
                s[key] = value
                s.pop("c", None)
            model[key] = value
            model.pop("c", None)
        assert same_value(s.to_dict(), model)
    sim.complete(s.synced(timeout=2.0))
    assert same_value(peer.to_dict(), model)


@pytest.mark.parametrize(("base", "update"), [(POISON_BASE, POISON), (BAD_BASE, BAD)])
def test_a_peer_update_that_breaks_yrs_is_refused_and_the_state_serves_on(
    layout: str, base: bytes, update: bytes
) -> None:
    from foundation_p2p.engine.messages import ReplicaDelta, SyncDelta

    sim = cluster(2)
    s0, s1 = sim.node("n0").shared_state("s"), sim.node("n1").shared_state("s")
    seen: list[Change] = []
    s0.observe(seen.append)
    s0["before"] = 1
    s0.apply_client_update(base)  # a Yjs client's content the bad update builds on
    sim.run_for(1.0)
    ydoc = sim.node("n0").engine.replication.replicas["state/s"]
    held = ydoc.full_update()
    engine = sim.node("n0").engine
    refused = engine.counters["refused.bad_delta"]
    message = SyncDelta(int(sim.now * 1000), (ReplicaDelta("state/s", "ydoc", update),))
    engine.receive(sim.now, "n1", message)
    assert engine.counters["refused.bad_delta"] == refused + 1
    before = YDoc.from_wire(["ydoc", 1, "x", held, []])
    if layout == "kv":  # the entries' fields encode in no fixed order: compare structs
        assert before.fingerprint() == ydoc.fingerprint()
    else:
        assert before == ydoc  # equal to before
    assert ydoc.generation == (1 if update is BAD else 0)  # BAD had changed it: rebuilt
    seen.clear()
    s0["after"] = 2  # writes go on (re-bound to a rebuilt document if it was replaced)
    assert [c.keys for c in seen] == [frozenset({"after"})]
    sim.run_for(1.0)
    assert s1.to_dict() == s0.to_dict() == {"before": 1, "after": 2}
