"""Model tests: replicas that received every delta, in any order and with duplicates, agree,
and what they read equals a plain Python model of the operations.

Models:
- counters: the sum of the amounts;
- LWWRegister / LWWMap: the write with the highest (timestamp, writer) wins (per key);
- MemberTable: per node, the claim with the highest (incarnation, status rank);
- AWORSet, MVRegister, ORMap keys: exact causal models (add-wins; concurrent values kept;
  update-wins) on histories whose causality is tracked exactly (full-state merges only), and
  the same operations applied to ONE replica sequentially against a Python set/dict;
- YDoc: one replica against a Python dict/list/str.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from crdt_strategies import (
    ALL_KINDS,
    KINDS,
    REPLICA_IDS,
    ByteRandom,
    Kind,
    Sim,
    choice_bytes,
    declare_roots,
    histories,
    op_lists,
    same,
    sim_from_bytes,
    sims,
)
from hypothesis import given, note
from hypothesis import strategies as st
from pycrdt import Array, Map, Text

from crdts import (
    HLC,
    STATUSES,
    AWORSet,
    LWWMap,
    MemberTable,
    MVRegister,
    ORMap,
    PNCounter,
    YDoc,
    normalize_key,
    normalize_value,
)

RANK = {status: rank for rank, status in enumerate(STATUSES)}


# --- value models over the writes of a simulation ---------------------------------------------


def counter_model(sim: Sim) -> int:
    """The sum of every increment minus every decrement."""
    return sum(-w.op[1] if w.op[0] == "dec" else w.op[1] for w in sim.writes)


def lww_key(sim: Sim, w: Any) -> tuple[Any, str]:
    """The order of LWW writes: timestamp, then writer replica id."""
    return (w.ts, sim.ids[w.replica])


def lwwregister_model(sim: Sim) -> Any:
    """The value of the write with the highest (ts, writer)."""
    if not sim.writes:
        return None
    return normalize_value(max(sim.writes, key=lambda w: lww_key(sim, w)).op[1])


def lwwmap_winners(sim: Sim) -> dict[Any, Any]:
    """Per key, the write with the highest (ts, writer)."""
    winners: dict[Any, Any] = {}
    for w in sim.writes:
        key = normalize_key(w.op[1])
        if key not in winners or lww_key(sim, w) > lww_key(sim, winners[key]):
            winners[key] = w
    return winners


def lwwmap_model(sim: Sim) -> dict[Any, Any]:
    """Per key, the value of the winning write, unless it is a delete."""
    return {
        key: normalize_value(w.op[2]) for key, w in lwwmap_winners(sim).items() if w.op[0] == "set"
    }


def members_model(sim: Sim) -> dict[str, str]:
    """Per node, the status of the claim with the highest (incarnation, status rank)."""
    best: dict[str, tuple[int, int]] = {}
    for w in sim.writes:
        node, claim = w.op[1], (w.op[2], RANK[w.op[0]])
        best[node] = max(best.get(node, claim), claim)
    return {node: STATUSES[rank] for node, (_, rank) in best.items()}


def written(sim: Sim, position: int = 1) -> set[Any]:
    """Every element/key/value the writes mention (normalized)."""
    return {normalize_key(w.op[position]) for w in sim.writes if len(w.op) > position}


VALUE_MODELS: dict[str, Callable[[Sim], Any]] = {
    "gcounter": counter_model,
    "pncounter": counter_model,
    "lwwregister": lwwregister_model,
    "lwwmap": lwwmap_model,
    "members": members_model,
}


def check_bounds(kind: Kind, sim: Sim, x: Any) -> None:
    """For the types with no exact model under delta delivery: what x reads was written."""
    if kind.name == "mvregister":
        assert x.value <= written(sim)
        assert bool(x.value) == bool(sim.writes)
    elif kind.name == "aworset":
        assert x.value <= {normalize_key(w.op[1]) for w in sim.writes if w.op[0] == "add"}
    elif kind.name.startswith("ormap"):
        assert set(x.value) <= {normalize_key(w.op[1]) for w in sim.writes if w.op[0] == "update"}


# --- convergence --------------------------------------------------------------------------


def shuffled_with_duplicates(n: int, rng: ByteRandom) -> list[int]:
    """0..n-1 in an order read from `rng`, with up to 4 of them delivered twice."""
    delivery = list(range(n))
    if n:
        delivery += [rng.randrange(n) for _ in range(rng.randrange(5))]
    for i in range(len(delivery) - 1, 0, -1):  # Fisher-Yates
        j = rng.randrange(i + 1)
        delivery[i], delivery[j] = delivery[j], delivery[i]
    return delivery


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.name)
@given(history=histories, choices=choice_bytes)
def test_any_delivery_of_the_deltas_converges_to_the_model(
    kind: Kind, history: bytes, choices: bytes
) -> None:
    sim = sim_from_bytes(kind, history)
    deltas = sim.deltas
    everything = sim.full_join()
    # a delivery: every delta at least once, some twice, in any order
    pick = ByteRandom(choices)
    delivery = shuffled_with_duplicates(len(deltas), pick)
    now = pick.randrange(71)
    note(f"{sim!r}\ndelivery: {delivery}, now_ms={now}")

    fresh = kind.make("fresh", 5)
    for index in delivery:
        fresh.merge(deltas[index])
    backwards = kind.make("backwards", 6)
    for index in reversed(delivery):
        backwards.merge(deltas[index])
    assert same(fresh, backwards)
    assert same(fresh, everything), "the deltas do not add up to the replicas' states"
    for replica in sim.replicas:  # replicas with partial histories catch up from the deltas
        for index in delivery:
            replica.merge(deltas[index])
        assert same(replica, everything)
        if not isinstance(replica, YDoc):
            assert replica.value == fresh.value
    if isinstance(fresh, YDoc):
        assert fresh.value == declare_roots(everything).value

    if kind.name in VALUE_MODELS:
        assert fresh.value == VALUE_MODELS[kind.name](sim)
    check_bounds(kind, sim, fresh)
    if kind.name == "lwwmap":
        expected = {
            key: normalize_value(w.op[2])
            for key, w in lwwmap_winners(sim).items()
            if w.op[0] == "set" and (w.op[3] is None or now < w.ts.wall_ms + w.op[3])
        }
        assert fresh.value_at(now) == expected
        assert {k: fresh.get(k, now_ms=now) for k in expected} == expected


# --- exact causal models ------------------------------------------------------------------


def survivors(
    sim: Sim,
    adds: Callable[[Any], bool],
    removes: Callable[[Any], bool],
    within: frozenset[int] | None = None,
) -> list[Any]:
    """The writes matching `adds` that no write matching `removes` has in its causal past
    (considering only the writes in `within`, a causally closed history; default: all)."""
    writes = [w for w in sim.writes if within is None or w.index in within]
    return [
        w for w in writes if adds(w) and not any(removes(r) and w.index in r.past for r in writes)
    ]


def histories(sim: Sim) -> list[tuple[Any, frozenset[int] | None]]:
    """(replica state, the writes it has seen) for every replica, and (everything, None)."""
    return [(r, frozenset(seen)) for r, seen in zip(sim.replicas, sim.seen, strict=True)] + [
        (sim.full_join(), None)
    ]


def op_on(names: set[str], target: Any) -> Callable[[Any], bool]:
    """Whether a write is one of the ops `names` on `target` ('clear' is on every target)."""

    def match(w: Any) -> bool:
        if w.op[0] not in names:
            return False
        return w.op[0] == "clear" or normalize_key(w.op[1]) == target

    return match


@given(sims(KINDS["aworset"], deltas=False))
def test_aworset_is_add_wins_under_concurrency(sim: Sim) -> None:
    for state, seen in histories(sim):
        expected = {
            e
            for e in written(sim)
            if survivors(sim, op_on({"add"}, e), op_on({"remove", "clear"}, e), seen)
        }
        assert state.value == expected


@given(sims(KINDS["mvregister"], deltas=False))
def test_mvregister_keeps_exactly_the_concurrent_values(sim: Sim) -> None:
    for state, seen in histories(sim):
        kept = survivors(sim, lambda w: True, lambda r: True, seen)
        assert state.value == {normalize_key(w.op[1]) for w in kept}


@pytest.mark.parametrize("kind", [KINDS["ormap_pncounter"], KINDS["ormap_aworset"]], ids=repr)
@given(data=st.data())
def test_ormap_key_survives_iff_an_update_is_unseen_by_every_remove(
    kind: Kind, data: st.DataObject
) -> None:
    sim = data.draw(sims(kind, deltas=False), label="sim")
    for state, seen in histories(sim):
        expected = {
            k
            for k in written(sim)
            if survivors(sim, op_on({"update"}, k), op_on({"remove"}, k), seen)
        }
        assert set(state.value) == expected


# --- one replica, sequential operations, against plain Python -----------------------------


@given(op_lists(KINDS["aworset"]))
def test_aworset_sequential_matches_a_python_set(ops: list[Any]) -> None:
    s, model = AWORSet("a"), set()
    for op in ops:
        KINDS["aworset"].apply(s, op, None)  # type: ignore[arg-type]
        if op[0] == "add":
            model.add(normalize_key(op[1]))
        elif op[0] == "remove":
            model.discard(normalize_key(op[1]))
        else:
            model.clear()
        assert s.value == model
        assert all(e in s for e in model)
        assert len(s) == len(model)


@given(op_lists(KINDS["ormap_pncounter"]))
def test_ormap_of_counters_sequential_matches_a_dict(ops: list[Any]) -> None:
    m, model = ORMap("a", value_type=PNCounter), {}
    for op in ops:
        KINDS["ormap_pncounter"].apply(m, op, None)  # type: ignore[arg-type]
        key = normalize_key(op[1])
        if op[0] == "remove":
            model.pop(key, None)  # a later update starts again from 0
        else:
            model[key] = model.get(key, 0) + op[2][1]
        assert m.value == model


@given(op_lists(KINDS["ormap_aworset"]))
def test_ormap_of_sets_sequential_matches_a_dict_of_sets(ops: list[Any]) -> None:
    m, model = ORMap("a", value_type=AWORSet), {}
    for op in ops:
        KINDS["ormap_aworset"].apply(m, op, None)  # type: ignore[arg-type]
        key = normalize_key(op[1])
        if op[0] == "remove":
            model.pop(key, None)
        else:
            elements_of = model.setdefault(key, set())
            if op[2][0] == "add":
                elements_of.add(normalize_key(op[2][1]))
            else:
                elements_of.discard(normalize_key(op[2][1]))
        assert m.value == model


@given(op_lists(KINDS["mvregister"], max_ops=8))
def test_mvregister_sequential_keeps_the_last_value(ops: list[Any]) -> None:
    r = MVRegister("a")
    for _, v in ops:
        r.set(v)
        assert r.value == {normalize_key(v)}
    assert r.value == ({normalize_key(ops[-1][1])} if ops else set())


@given(op_lists(KINDS["lwwmap"]), st.integers(0, 3))
def test_lwwmap_sequential_matches_a_dict(ops: list[Any], step: int) -> None:
    m, model, clock = LWWMap("a"), {}, HLC("a")
    for i, op in enumerate(ops):
        KINDS["lwwmap"].apply(m, op, clock.now(i * step))
        if op[0] == "set":
            model[normalize_key(op[1])] = normalize_value(op[2])
        else:
            model.pop(normalize_key(op[1]), None)
        assert m.value == model
        assert len(m) == len(model) and set(m) == set(model)


@given(op_lists(KINDS["ydoc"], max_ops=12))
def test_ydoc_sequential_matches_python_containers(ops: list[Any]) -> None:
    doc = KINDS["ydoc"].make(REPLICA_IDS[0], 0)
    model: dict[str, Any] = {"m": {}, "a": [], "t": ""}

    def plain(v: Any) -> Any:
        return float(v) if type(v) is int else v  # Yjs numbers are doubles

    for op in ops:
        KINDS["ydoc"].apply(doc, op, None)  # type: ignore[arg-type]
        name = op[0]
        if name == "mset":
            model["m"][op[1]] = plain(op[2])
        elif name == "mdel":
            model["m"].pop(op[1], None)
        elif name == "ains":
            model["a"].insert(min(op[1], len(model["a"])), plain(op[2]))
        elif name == "adel" and model["a"]:
            del model["a"][op[1] % len(model["a"])]
        elif name == "tins":
            t = model["t"]
            i = min(op[1], len(t))
            model["t"] = t[:i] + op[2] + t[i:]
        elif name == "tdel" and model["t"]:
            t = model["t"]
            i = op[1] % len(t)
            model["t"] = t[:i] + t[i + op[2] :]
        assert doc.value == model
    copy = YDoc("b")
    copy.merge(doc.full_update())
    assert copy.get("m", Map).to_py() == model["m"]
    assert copy.get("a", Array).to_py() == model["a"]
    assert str(copy.get("t", Text)) == model["t"]


claims = st.tuples(st.sampled_from(STATUSES), st.sampled_from(["n1", "n2"]), st.integers(0, 3))


@given(st.lists(claims, max_size=12))
def test_members_sequential_keeps_the_highest_precedence(claims: list[Any]) -> None:
    t, best = MemberTable("a"), {}
    for status, node, inc in claims:
        delta = getattr(t, status)(node, inc)
        news = (inc, RANK[status]) > best.get(node, (-1, -1))
        assert (node in delta.value) == news, "a claim returns a non-empty delta iff it is news"
        if news:
            best[node] = (inc, RANK[status])
        assert t.value == {n: STATUSES[r] for n, (_, r) in best.items()}
