"""SharedState(layout="lanes"): one Array of kv entries per writer (services/lanes.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc

from foundation_p2p.config import Config
from foundation_p2p.services.kvlayout import LOCAL_ORIGIN
from foundation_p2p.services.lanes import LANE_PREFIX, LaneKeyValues
from foundation_p2p.services.state import SharedState
from simulations import SimCluster

NODES = ["n0", "n1", "n2"]


def lanes_doc(client_id: int) -> tuple[Doc[Any], LaneKeyValues]:
    doc: Doc[Any] = Doc(client_id=client_id)
    return doc, LaneKeyValues(doc, client_id)


def sync(source: Doc[Any], target: Doc[Any], kv: LaneKeyValues) -> None:
    target.apply_update(source.get_update(target.get_state()))
    kv.touched()


def structs(doc: Doc[Any]) -> int:
    """Yjs structs in the document's encoding (a proxy for the items yrs keeps)."""
    return len(doc.get_update())


def test_a_set_goes_to_the_writers_lane_and_reads_like_a_dict() -> None:
    doc, kv = lanes_doc(7)
    with doc.transaction(origin=LOCAL_ORIGIN):
        kv["a"] = 1
        kv["b"] = "two"
        kv["a"] = 3
        assert kv.pop("b") == "two" and kv.pop("b", "gone") == "gone"
    assert dict(kv.items()) == {"a": 3} and len(kv) == 1 and "a" in kv and list(kv) == ["a"]
    assert doc.get(f"{LANE_PREFIX}7", type=Array).to_py() == [{"key": "a", "val": 3}]
    assert kv.changed == {"a", "b"}


def test_rewriting_keys_from_three_writers_does_not_grow_the_document() -> None:
    docs = [lanes_doc(client) for client in (1, 2, 3)]

    def round_of_writes(turn: int) -> None:
        for index, (doc, kv) in enumerate(docs):
            with doc.transaction(origin=LOCAL_ORIGIN):
                for key in range(50):
                    kv[f"w{index}-{key}"] = turn
            for other, other_kv in docs:
                if other is not doc:
                    sync(doc, other, other_kv)

    round_of_writes(0)
    size = max(structs(doc) for doc, _ in docs)
    for turn in range(1, 200):
        round_of_writes(turn)
    assert max(structs(doc) for doc, _ in docs) <= size * 1.1
    assert all(dict(kv.items()) == dict(docs[0][1].items()) for _, kv in docs)
    assert docs[0][1].get("w2-49") == 199 and docs[0][1].lanes == 3


def test_a_set_moves_the_key_out_of_another_writers_lane() -> None:
    (a, kv_a), (b, kv_b) = lanes_doc(1), lanes_doc(2)
    with a.transaction(origin=LOCAL_ORIGIN):
        kv_a["k"] = "from a"
    sync(a, b, kv_b)
    with b.transaction(origin=LOCAL_ORIGIN):
        kv_b["k"] = "from b"
    sync(b, a, kv_a)
    assert a.get(f"{LANE_PREFIX}1", type=Array).to_py() == []
    assert kv_a.get("k") == kv_b.get("k") == "from b" and not kv_a.duplicates


def test_concurrent_sets_keep_the_highest_lane_and_cleanup_removes_the_rest() -> None:
    docs = [lanes_doc(client) for client in (5, 9, 2)]
    for index, (doc, kv) in enumerate(docs):
        with doc.transaction(origin=LOCAL_ORIGIN):
            kv["k"] = f"on {index}"
    for source, _ in docs:
        for target, kv in docs:
            if source is not target:
                sync(source, target, kv)
    assert {kv.get("k") for _, kv in docs} == {"on 1"}  # client 9 wins everywhere
    doc, kv = docs[0]
    assert kv.duplicates == {"k"}
    with doc.transaction(origin=LOCAL_ORIGIN):
        assert kv.cleanup()
    for target, other in docs[1:]:
        sync(doc, target, other)
    for doc, kv in docs:
        lanes = [doc.get(f"{LANE_PREFIX}{c}", type=Array).to_py() for c in (5, 9, 2)]
        assert lanes == [[], [{"key": "k", "val": "on 1"}], []]
        assert not kv.duplicates and kv.get("k") == "on 1"


def test_a_foreign_lane_item_is_counted_and_never_read() -> None:
    (a, kv_a), (b, kv_b) = lanes_doc(1), lanes_doc(2)
    with a.transaction():
        a.get(f"{LANE_PREFIX}1", type=Array).append("not an entry")
        a.get(f"{LANE_PREFIX}x", type=Array).append({"key": "k", "val": "odd lane name"})
    sync(a, b, kv_b)
    assert dict(kv_b.items()) == {"k": "odd lane name"}
    with b.transaction(origin=LOCAL_ORIGIN):
        kv_b["k"] = "replaced"
    sync(b, a, kv_a)
    assert dict(kv_a.items()) == {"k": "replaced"}


@settings(max_examples=100)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from("abc"), st.sampled_from(["set", "del"])),
        max_size=30,
    ),
    st.lists(st.integers(0, 2), max_size=30),
)
def test_the_lanes_agree_after_any_interleaving(
    operations: list[tuple[int, str, str]], syncs: list[int]
) -> None:
    docs = [lanes_doc(client) for client in (3, 1, 2)]
    for step, (writer, key, kind) in enumerate(operations):
        doc, kv = docs[writer]
        with doc.transaction(origin=LOCAL_ORIGIN):
            if kind == "set":
                kv[key] = step
            else:
                kv.pop(key)
        if step < len(syncs):
            source = docs[syncs[step]][0]
            for target, other in docs:
                if target is not source:
                    sync(source, target, other)
    for _ in range(2):
        for source, _ in docs:
            for target, other in docs:
                if target is not source:
                    sync(source, target, other)
    views = [dict(kv.items()) for _, kv in docs]
    assert views[0] == views[1] == views[2]
    fresh, kv = lanes_doc(99)  # the mirror equals a fresh read of the document
    sync(docs[0][0], fresh, kv)
    assert dict(kv.items()) == views[0]


# --- SharedState(layout="lanes") on the simulator --------------------------------------


def cluster() -> SimCluster:
    sim = SimCluster(3, seed=5, config=Config.simulation())
    sim.run_for(3.0)
    return sim


def test_lanes_replicate_converge_and_stay_small_on_the_simulator() -> None:
    sim = cluster()
    s = [SharedState("s", node=sim.node(n), layout="lanes") for n in NODES]
    for turn in range(3):
        for index, state in enumerate(s):
            with state.transaction():
                for key in range(20):
                    state[f"{index}-{key}"] = turn
        sim.run_for(0.5)
    size = s[0].size_bytes()
    for turn in range(3, 60):
        for index, state in enumerate(s):
            for key in range(20):
                state[f"{index}-{key}"] = turn
        sim.run_for(0.2)
    assert sim.run_until(lambda c: c.converged(), timeout=30.0)
    assert all(state.to_dict() == s[0].to_dict() for state in s)
    assert s[1]["2-19"] == 59 and len(s[2]) == 60
    assert s[0].size_bytes() <= size * 1.1


def test_concurrent_sets_and_a_delete_converge_across_a_partition() -> None:
    sim = cluster()
    s = [SharedState("s", node=sim.node(n), layout="lanes") for n in NODES]
    s[0]["gone"] = 0
    s[0]["kept"] = 0
    sim.complete(s[0].synced(timeout=2.0))
    sim.partition(["n0"], ["n1"], ["n2"])
    for i, state in enumerate(s):
        state["k"] = f"written on n{i}"
    del s[1]["gone"]
    s[2]["gone"] = "concurrent with the delete"
    sim.heal()
    assert sim.run_until(lambda c: c.converged(), timeout=30.0)
    sim.run_for(3.0)
    assert all(state.to_dict() == s[0].to_dict() for state in s)
    assert s[0]["gone"] == "concurrent with the delete" and s[0]["kept"] == 0
    assert s[0]["k"] in {f"written on n{i}" for i in range(3)}
    doc = sim.node("n1").engine.replication.replicas["state/s"].doc
    keys = [
        entry["key"]
        for root in doc.keys()
        if root.startswith(LANE_PREFIX)
        for entry in doc.get(root, type=Array).to_py()
    ]
    assert sorted(keys) == ["gone", "k", "kept"]  # the losing entries were cleaned


def test_observers_see_remote_keys_in_the_lanes_layout() -> None:
    sim = cluster()
    s = [SharedState("s", node=sim.node(n), layout="lanes") for n in NODES]
    seen: list[tuple[frozenset[str], str]] = []
    s[0].observe(lambda change: seen.append((change.keys, change.origin)))
    s[0]["mine"] = 1
    s[1]["theirs"] = 2
    sim.run_for(2.0)
    assert seen[0] == (frozenset({"mine"}), "local")
    assert (frozenset({"theirs"}), "n1") in seen


def test_a_lanes_document_refuses_the_other_layouts() -> None:
    sim = cluster()
    lanes = sim.node("n0").shared_state("s", layout="lanes")
    lanes["k"] = 1
    sim.run_for(2.0)
    on_peer = sim.node("n1").shared_state("s", layout="kv")
    with pytest.raises(ValueError, match="has the 'lanes' layout, opened with the 'kv' layout"):
        on_peer.get("k")
    assert SharedState("s", node=sim.node("n2"), layout="lanes")["k"] == 1


def test_counters_count_every_increment_and_stay_small_in_the_lanes_layout() -> None:
    sim = cluster()
    s = [SharedState("s", node=sim.node(n), layout="lanes") for n in NODES]
    for state in s:
        state.counter("visits").increment()
    sim.run_for(1.0)
    size = s[0].size_bytes()
    for _ in range(100):
        for state in s:
            state.counter("visits").increment(2)
            state.counter("errors").decrement()
        sim.run_for(0.1)
    assert sim.run_until(lambda c: c.converged(), timeout=30.0)
    assert [state.counter("visits").value for state in s] == [603] * 3
    assert [state.counter("errors").value for state in s] == [-300] * 3
    doc = sim.node("n0").engine.replication.replicas["state/s"].doc
    assert not [root for root in doc.keys() if root.startswith("counter:")]
    assert s[0].size_bytes() <= size + 400  # one more entry per writer, not one per increment


def test_a_map_state_rewritten_many_times_suggests_the_lanes_layout_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from foundation_p2p.services import state as state_module

    monkeypatch.setattr(state_module, "REWRITE_HINT_SETS", 1000)
    sim = SimCluster(1, seed=1)
    node = sim.node("n0")
    rewritten = node.shared_state("rewritten")
    fresh = node.shared_state("fresh")
    lanes = node.shared_state("lanes", layout="lanes")
    with caplog.at_level("WARNING", logger="foundation_p2p.state"):
        for turn in range(60):
            for key in range(50):
                rewritten[f"k{key}"] = turn  # 3000 sets over 50 keys
                lanes[f"k{key}"] = turn
            with fresh.transaction():
                for key in range(50):
                    fresh[f"t{turn}-{key}"] = key  # 3000 sets over 3000 keys
        sim.run_for(0.1)
    hints = [r.getMessage() for r in caplog.records if "layout=" in r.getMessage()]
    assert len(hints) == 1 and "'rewritten': " in hints[0] and "over 50 keys" in hints[0]
    assert node.engine.counters["state.rewrite_hint"] == 1
