"""The "kv" layout: KeyValueArray over pycrdt Docs, and SharedState(layout="kv") on the
simulator (concurrent sets, duplicates cleaned, delete against set, the fixed layout)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycrdt import Array, Doc

from foundation_p2p.config import Config
from foundation_p2p.services import kvlayout
from foundation_p2p.services.kvlayout import LOCAL_ORIGIN, KeyValueArray
from foundation_p2p.services.state import SharedState
from simulations import SimCluster

NODES = ("n0", "n1", "n2")


def kv_doc(client_id: int) -> tuple[Doc[Any], KeyValueArray]:
    doc: Doc[Any] = Doc(client_id=client_id)
    return doc, KeyValueArray(doc.get("kv", type=Array))


def sync(source: Doc[Any], target: Doc[Any]) -> None:
    with target.transaction(origin="remote"):
        target.apply_update(source.get_update(target.get_state()))


def entries(kv: KeyValueArray) -> list[tuple[str, Any]]:
    return [(e["key"], e["val"]) for e in kv._array.to_py() or []]


def test_a_set_replaces_the_entry_and_reads_like_a_dict() -> None:
    doc, kv = kv_doc(1)
    with doc.transaction(origin=LOCAL_ORIGIN):
        kv["a"] = 1
        kv["b"] = "x"
        kv["a"] = 2
    assert entries(kv) == [("b", "x"), ("a", 2.0)]
    assert kv.get("a") == 2 and "b" in kv and len(kv) == 2 and kv.get("zz", 7) == 7
    with doc.transaction(origin=LOCAL_ORIGIN):
        assert kv.pop("b") == "x" and kv.pop("b", None) is None
    assert dict(kv.items()) == {"a": 2} and entries(kv) == [("a", 2.0)]


def test_a_write_outside_a_transaction_is_refused() -> None:
    _, kv = kv_doc(1)
    with pytest.raises(RuntimeError, match="outside a transaction"):
        kv["a"] = 1


def test_rewriting_keys_does_not_grow_the_document() -> None:
    doc, kv = kv_doc(1)
    sizes = []
    for rounds in range(4):
        for i in range(200):
            with doc.transaction(origin=LOCAL_ORIGIN):
                kv[f"k{i}"] = rounds
        sizes.append(len(doc.get_update()))
    assert sizes[3] == sizes[1]  # one writer: its deleted entries squash into one struct
    assert len(kv) == 200


def test_concurrent_sets_keep_the_last_entry_everywhere_and_cleanup_removes_the_rest() -> None:
    docs = [kv_doc(i + 1) for i in range(3)]
    for doc, kv in docs:
        with doc.transaction(origin=LOCAL_ORIGIN):
            kv["shared"] = f"from {doc.client_id}"
    for doc, _ in docs:
        for other, _ in docs:
            if other is not doc:
                sync(other, doc)
    order = [key for key, _ in entries(docs[0][1])]
    assert order == ["shared"] * 3  # every doc holds the same three entries, same order
    winner = entries(docs[0][1])[-1][1]
    for _, kv in docs:
        assert kv.get("shared") == winner and kv.duplicates == {"shared"}
    doc0, kv0 = docs[0]
    with doc0.transaction(origin=LOCAL_ORIGIN):
        assert kv0.cleanup()
    assert entries(kv0) == [("shared", winner)] and not kv0.duplicates
    for doc, kv in docs[1:]:
        sync(doc0, doc)
        assert entries(kv) == [("shared", winner)] and not kv.duplicates
        assert kv.get("shared") == winner


def test_a_foreign_array_item_is_counted_and_never_read() -> None:
    doc, kv = kv_doc(1)
    other: Doc[Any] = Doc(client_id=2)
    with other.transaction():
        other.get("kv", type=Array).extend([7, {"key": 3, "val": 1}, {"key": "ok", "val": 1}])
    sync(other, doc)
    assert dict(kv.items()) == {"ok": 1} and kv.malformed == 2
    loaded = KeyValueArray(doc.get("kv", type=Array))  # the same items, read at load
    assert dict(loaded.items()) == {"ok": 1} and loaded.malformed == 2
    with doc.transaction(origin=LOCAL_ORIGIN):
        kv["ok"] = 2  # positions stay right with the foreign items in front
    assert other.get("kv", type=Array).to_py()[:2] == [7.0, {"key": 3.0, "val": 1.0}]


ops = st.lists(
    st.tuples(
        st.integers(0, 2),  # which doc
        st.sampled_from(["set", "del", "sync", "clean"]),
        st.sampled_from(["a", "b", "c", "d"]),
        st.integers(0, 2),  # sync source
    ),
    max_size=40,
)


@pytest.mark.parametrize("compact_after", [kvlayout.COMPACT_AFTER, 0])
@given(operations=ops)
def test_the_mirror_always_matches_the_array(
    compact_after: int, operations: list[tuple[int, str, str, int]]
) -> None:
    default = kvlayout.COMPACT_AFTER
    kvlayout.COMPACT_AFTER = compact_after  # 0: the mirror drops gone slots at every chance
    try:
        check_mirror(operations)
    finally:
        kvlayout.COMPACT_AFTER = default


def check_mirror(operations: list[tuple[int, str, str, int]]) -> None:
    docs = [kv_doc(i + 1) for i in range(3)]
    for n, (which, op, key, source) in enumerate(operations):
        doc, kv = docs[which]
        if op == "sync":
            if source != which:
                sync(docs[source][0], doc)
        else:
            with doc.transaction(origin=LOCAL_ORIGIN):
                if op == "set":
                    kv[key] = n
                elif op == "del":
                    kv.pop(key, None)
                else:
                    kv.cleanup()
        for _, each in docs:
            stored = entries(each)
            mirrored, _ = each._ordered()
            assert mirrored == [k for k, _ in stored]
            expected: dict[str, Any] = {}
            for k, v in stored:
                expected[k] = v  # the last entry wins
            assert dict(each.items()) == expected
            assert each.duplicates == {k for k in expected if mirrored.count(k) > 1}
            for k in expected:  # each key's slot holds its last entry
                assert each._vals[each._slot[k]] == expected[k]
                assert each._live.before(each._slot[k]) == max(
                    i for i, m in enumerate(mirrored) if m == k
                )
    for source, _ in docs:
        for target, _ in docs:
            if source is not target:
                sync(source, target)
    views = [dict(kv.items()) for _, kv in docs]
    assert views[0] == views[1] == views[2]


# --- SharedState(layout="kv") on the simulator ---------------------------------------------


def cluster() -> SimCluster:
    sim = SimCluster(3, seed=3, config=Config.simulation())
    sim.run_for(3.0)
    return sim


def states(sim: SimCluster, layout: str, name: str = "s") -> list[SharedState]:
    return [SharedState(name, node=sim.node(n), layout=layout) for n in NODES]


def stored_entries(sim: SimCluster, node: str, name: str = "s") -> list[str]:
    doc = sim.node(node).engine.replication.replicas[f"state/{name}"]
    return [e["key"] for e in doc.get("kv", Array).to_py()]


def test_concurrent_sets_of_one_key_on_three_nodes_converge_to_one_entry() -> None:
    sim = cluster()
    s = states(sim, "kv")
    s[0]["other"] = "kept"
    sim.complete(s[0].synced(timeout=2.0))
    sim.partition(["n0"], ["n1"], ["n2"])
    for i, state in enumerate(s):
        state["k"] = f"written on n{i}"
        state["k"] = f"rewritten on n{i}"  # each node's own earlier entry is replaced
    sim.heal()
    assert sim.run_until(lambda c: c.converged(), timeout=30.0)
    sim.run_for(3.0)
    values = {state["k"] for state in s}
    assert len(values) == 1 and values <= {f"rewritten on n{i}" for i in range(3)}
    for node in NODES:
        assert sorted(stored_entries(sim, node)) == ["k", "other"]  # duplicates cleaned
    assert all(state.to_dict() == s[0].to_dict() for state in s)


@pytest.mark.parametrize("layout", ["map", "kv"])
def test_a_set_concurrent_with_a_delete_survives_in_both_layouts(layout: str) -> None:
    sim = cluster()
    s = states(sim, layout)
    s[0]["k"] = "first"
    sim.complete(s[0].synced(timeout=2.0))
    sim.partition(["n0"], ["n1", "n2"])
    del s[0]["k"]
    s[1]["k"] = "concurrent"
    sim.heal()
    assert sim.run_until(lambda c: c.converged(), timeout=30.0)
    assert [state.get("k") for state in s] == ["concurrent"] * 3


def test_observers_see_remote_keys_and_the_origin_but_not_the_cleanup() -> None:
    sim = cluster()
    s = states(sim, "kv")
    seen: list[tuple[frozenset[str], str]] = []
    s[0].observe(lambda change: seen.append((change.keys, change.origin)))
    sim.partition(["n0"], ["n1", "n2"])
    s[0]["k"] = 1
    s[1]["k"] = 2
    s[1]["j"] = 3
    sim.heal()
    assert sim.run_until(lambda c: c.converged(), timeout=30.0)
    assert seen[0] == (frozenset({"k"}), "local")
    remote = [keys for keys, origin in seen[1:] if origin != "local"]
    assert set().union(*remote) == {"k", "j"}
    assert all(keys for keys, _ in seen)  # the cleanup's delete is no change


def test_the_layout_of_a_state_is_fixed() -> None:
    sim = cluster()
    kv = SharedState("s", node=sim.node("n0"), layout="kv")
    kv["k"] = 1
    sim.complete(kv.synced(timeout=2.0))
    with pytest.raises(ValueError, match="uses the 'kv' layout, not 'map'"):
        SharedState("s", node=sim.node("n0"), layout="map")
    on_peer = sim.node("n1").shared_state("s", layout="map")  # asked for the other layout
    with pytest.raises(ValueError, match="has the 'kv' layout, opened with the 'map' layout"):
        on_peer.get("k")
    assert SharedState("s", node=sim.node("n1"), layout="kv")["k"] == 1
    unasked = sim.node("n2").shared_state("s")  # no layout named: the document's is taken
    assert unasked["k"] == 1 and unasked.layout == "kv"
    with pytest.raises(ValueError, match="layout must be one of map, kv"):
        SharedState("t", node=sim.node("n0"), layout="array")
    m = sim.node("n2").shared_state("m")
    m["k"] = 1
    with pytest.raises(ValueError, match="uses the 'map' layout, not 'kv'"):
        SharedState("m", node=sim.node("n2"), layout="kv")


def test_every_node_kind_opens_a_state_with_a_layout() -> None:
    """`node.shared_state(name, layout=)` on the simulator, the asyncio Node and NodeThread is
    the same as `SharedState(name, node=node, layout=)`."""
    from foundation_p2p.node import Node
    from foundation_p2p.runtime.thread import NodeThread

    sim = cluster()
    state = sim.node("n0").shared_state("s", layout="kv")
    assert state.layout == "kv" and state is SharedState("s", node=sim.node("n0"))
    with pytest.raises(ValueError, match="uses the 'kv' layout, not 'map'"):
        sim.node("n0").shared_state("s", layout="map")
    thread = NodeThread(Node(cluster="layouts", listen="127.0.0.1:0", discovery=None)).start()
    try:
        kv = thread.shared_state("readings", layout="kv")
        kv["t1"] = 21.5
        assert kv.layout == "kv" and thread.node.shared_state("readings") is kv
        assert kv["t1"] == 21.5
    finally:
        thread.stop()
