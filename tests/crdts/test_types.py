"""Concrete examples of the semantics of counters, registers, sets and maps.

Each test is a small scenario with a known answer: add-wins, LWW ties broken by the writer id,
ORMap's remove/update semantics, LWWMap TTLs and compaction, value normalization, and the
bugs found while writing the property tests (each named after the behaviour it expects).
"""

from __future__ import annotations

import itertools
from typing import Any

import msgpack
import pytest
from crdt_strategies import join, packed_round_trip, values
from hypothesis import given

from crdts import (
    HLC,
    AWORSet,
    GCounter,
    LWWMap,
    LWWRegister,
    MVRegister,
    ORMap,
    PNCounter,
    Timestamp,
    normalize_key,
    normalize_value,
)


def ts(wall: int, counter: int = 0, node: str = "") -> Timestamp:
    """A timestamp (node '' so that equal walls tie and the writer id decides)."""
    return Timestamp(wall, counter, node)


def all_orders(*deltas: Any) -> list[list[Any]]:
    """Every delivery order of `deltas`."""
    return [list(p) for p in itertools.permutations(deltas)]


# --- counters -----------------------------------------------------------------------------


def test_pncounter_as_in_the_issue() -> None:
    c = PNCounter(replica="a")
    d = c.increment(5)
    c.decrement(2)
    assert c.value == 3
    assert isinstance(d, PNCounter) and d.value == 5
    other = PNCounter("b")
    other.merge(d)
    assert other.value == 5
    c.increment(-4)  # a negative increment decrements
    assert c.value == -1
    c.decrement(-1)  # and a negative decrement increments
    assert c.value == 0


def test_counters_sum_concurrent_increments_once_each() -> None:
    a, b = GCounter("a"), GCounter("b")
    deltas = [a.increment(2), b.increment(3), a.increment(1), b.increment(4)]
    for order in all_orders(*deltas):
        c = GCounter("c")
        for d in order + order:
            c.merge(d)
        assert c.value == 10
    assert a.delta_since(b.digest()) == GCounter.from_wire(["gcounter", 1, "a", {"a": 3}])


def test_gcounter_rejects_decrements() -> None:
    with pytest.raises(ValueError):
        GCounter("a").increment(-1)


def test_equality_ignores_the_local_replica_id() -> None:
    a, b = PNCounter("a"), PNCounter("b")
    a.merge(PNCounter("z").increment(2))
    b.merge(PNCounter("z").increment(2))
    assert a == b and a.replica != b.replica


@pytest.mark.parametrize("cls", [GCounter, PNCounter])
def test_increment_by_zero_keeps_equality_and_wire_round_trip(cls: Any) -> None:
    """Regression: increment(0) used to store an explicit 0 total, so the replica differed
    from a fresh one, from_wire (which drops zero totals) did not give it back, and merge was
    not commutative under ==."""
    c = cls("a")
    c.increment(0)
    assert c.value == 0
    assert c == cls("b")
    assert cls.from_wire(c.to_wire()) == c
    fresh = cls("b")
    assert join(c, fresh) == join(fresh, c)


# --- registers ----------------------------------------------------------------------------


def test_lww_register_later_timestamp_wins_in_any_order() -> None:
    a, b = LWWRegister("a"), LWWRegister("b")
    early = a.set("early", ts(10))
    late = b.set("late", ts(11))
    for order in all_orders(early, late):
        r = LWWRegister("c")
        for d in order:
            r.merge(d)
        assert r.value == "late" and r.timestamp == ts(11)
    older = a.set("older", ts(5))  # an older write loses, even locally ...
    assert a.value == "early"
    b.merge(older)  # ... and anywhere else
    assert b.value == "late"
    a.merge(late)
    assert a.value == "late" and a == b


def test_lww_register_tie_is_broken_by_writer_id() -> None:
    a, b = LWWRegister("a"), LWWRegister("b")
    da = a.set("from a", ts(10))
    db = b.set("from b", ts(10))
    for order in all_orders(da, db):
        r = LWWRegister("c")
        for d in order:
            r.merge(d)
        assert r.value == "from b"  # "b" > "a"


def test_lww_register_reads_back_what_every_replica_reads() -> None:
    r = LWWRegister("a")
    r.set({"k": (1, bytearray(b"x"), [2, (3,)])}, ts(1))
    assert r.value == {"k": [1, b"x", [2, [3]]]}
    assert type(r.value["k"][1]) is bytes
    assert LWWRegister.from_wire(packed_round_trip(r.to_wire())).value == r.value


@given(values)
def test_any_accepted_value_reads_back_normalized_everywhere(value: Any) -> None:
    r, m = LWWRegister("a"), LWWMap("a")
    r.set(value, ts(1))
    m.set("k", value, ts(1))
    expected = normalize_value(value)
    for x, read in ((r, lambda x: x.value), (m, lambda x: x.get("k"))):
        assert read(x) == expected
        remote = type(x).from_wire(packed_round_trip(x.to_wire()))
        assert read(remote) == expected
        assert msgpack.packb(read(remote)) == msgpack.packb(expected)


def test_nan_value_replica_equals_its_copy() -> None:
    """BUG: NaN is an accepted value, but NaN != NaN makes a replica holding it unequal to
    its own copy (LWWRegister compares values with ==) and to its msgpack round trip
    (LWWMap entries compare by identity first, which a decoded float does not share)."""
    r = LWWRegister("a")
    r.set(float("nan"), ts(1))
    assert r == r.copy()
    m = LWWMap("a")
    m.set("k", [float("nan")], ts(1))
    assert LWWMap.from_wire(packed_round_trip(m.to_wire())) == m


def test_mvregister_keeps_concurrent_values_until_a_write_sees_them() -> None:
    a, b = MVRegister("a"), MVRegister("b")
    da, db = a.set("x"), b.set(["y", 1])
    for order in all_orders(da, db):
        r = MVRegister("c")
        for d in order:
            r.merge(d)
        assert r.value == {"x", ("y", 1)}
    a.merge(db)
    resolved = a.set("z")
    b.merge(resolved)
    assert a.value == b.value == {"z"}
    late = MVRegister("c")
    late.merge(db)
    late.merge(resolved)
    assert late.value == {"z"}


# --- sets ---------------------------------------------------------------------------------


def test_aworset_as_in_the_issue() -> None:
    s = AWORSet(replica="a")
    s.add("x")
    s.remove("x")
    assert "x" not in s
    assert s.value == frozenset()
    s.add(["t", 1])
    assert ("t", 1) in s and ["t", 1] in s and s.value == {("t", 1)}
    assert {"unhashable": 1} not in s


def test_aworset_concurrent_add_wins_over_remove() -> None:
    a, b = AWORSet("a"), AWORSet("b")
    b.merge(a.add("x"))
    removed = b.remove("x")  # b removes the add it has seen ...
    added = a.add("x")  # ... while a adds x again
    seed = AWORSet("s").add("seed")
    for order in all_orders(removed, added):
        c = AWORSet("c")
        c.merge(seed)
        for d in order:
            c.merge(d)
        assert "x" in c
    a.merge(removed)
    b.merge(added)
    assert "x" in a and "x" in b and a == b


def test_aworset_remove_takes_out_only_the_adds_it_has_seen() -> None:
    a, b = AWORSet("a"), AWORSet("b")
    unseen = a.add("x")
    b.add("x")
    removed = b.remove("x")  # b's remove has seen only b's add
    c = AWORSet("c")
    for d in (removed, unseen):
        c.merge(d)
    assert "x" in c
    b.merge(unseen)
    assert "x" in b
    gone = b.remove("x")  # now b has seen both adds
    a.merge(gone)
    assert "x" not in a


def test_aworset_clear_removes_what_it_has_seen() -> None:
    a, b = AWORSet("a"), AWORSet("b")
    for e in "xyz":
        b.merge(a.add(e))
    concurrent = a.add("w")
    cleared = b.clear()
    a.merge(cleared)
    assert a.value == {"w"}
    b.merge(concurrent)
    assert a == b


def test_aworset_rejects_floats_bools_and_unhashable_elements() -> None:
    s = AWORSet("a")
    with pytest.raises(TypeError):
        s.add(float("nan"))
    with pytest.raises(TypeError):
        s.add({"a": 1})
    assert len(s) == 0


@pytest.mark.parametrize("element", [True, 1.0, -0.0, (1, 2.5)])
def test_keys_that_python_would_conflate_are_refused(element: Any) -> None:
    """1, 1.0 and True are one Python key, so which of them a replica read back would depend on
    its merge history (the writer keeps the dict key it had, a peer takes the delta's). Sets
    and maps therefore refuse bool and float members, before any state changes."""
    a = AWORSet("a")
    a.add(1)
    before = a.to_wire()
    with pytest.raises(TypeError, match="one Python key"):
        a.add(element)
    assert a.to_wire() == before
    m, clock = LWWMap("a"), HLC("a")
    with pytest.raises(TypeError, match="one Python key"):
        m.set(element, "v", clock.now(1))
    assert len(m) == 0


def test_mvregister_values_may_be_floats_and_bools() -> None:
    r = MVRegister("a")
    r.set(21.5)
    r.set(True)
    assert r.value == {True}


# --- ORMap --------------------------------------------------------------------------------


def test_ormap_as_in_the_issue() -> None:
    om: ORMap[PNCounter] = ORMap(replica="a", value_type=PNCounter)
    om.update("k", lambda v: v.increment(1))
    assert om.value == {"k": 1}
    om.remove("k")
    assert om.value == {} and "k" not in om and om.get("k") is None


def test_ormap_remove_then_update_starts_from_empty() -> None:
    a: ORMap[PNCounter] = ORMap("a", value_type=PNCounter)
    b: ORMap[PNCounter] = ORMap("b", value_type=PNCounter)
    deltas = [a.update("k", lambda v: v.increment(5)), a.remove("k")]
    deltas.append(a.update("k", lambda v: v.increment(1)))
    assert a.value == {"k": 1}
    for d in deltas:
        b.merge(d)
    assert b.value == {"k": 1}
    sets: ORMap[AWORSet] = ORMap("a", value_type=AWORSet)
    sets.update("k", lambda s: s.add("old"))
    sets.remove("k")
    sets.update("k", lambda s: s.add("new"))
    assert sets.value == {"k": {"new"}}


def test_ormap_update_concurrent_with_remove_survives_with_what_it_wrote() -> None:
    a: ORMap[AWORSet] = ORMap("a", value_type=AWORSet)
    b: ORMap[AWORSet] = ORMap("b", value_type=AWORSet)
    b.merge(a.update("k", lambda s: s.add("x")))
    removed = a.remove("k")
    updated = b.update("k", lambda s: s.add("y"))
    for order in all_orders(removed, updated):
        c: ORMap[AWORSet] = ORMap("c", value_type=AWORSet)
        for d in order:
            c.merge(d)
        assert "k" in c and "y" in c.value["k"]
    a.merge(updated)
    b.merge(removed)
    assert a == b and "y" in a.value["k"]


def test_ormap_remove_does_not_touch_updates_it_has_not_seen() -> None:
    a: ORMap[PNCounter] = ORMap("a", value_type=PNCounter)
    b: ORMap[PNCounter] = ORMap("b", value_type=PNCounter)
    unseen = b.update("k", lambda v: v.increment(3))
    a.update("k", lambda v: v.increment(1))
    removed = a.remove("k")
    c: ORMap[PNCounter] = ORMap("c", value_type=PNCounter)
    c.merge(removed)
    c.merge(unseen)
    assert c.value == {"k": 3}


def test_ormap_rejects_merging_another_value_type() -> None:
    a: ORMap[PNCounter] = ORMap("a", value_type=PNCounter)
    b: ORMap[AWORSet] = ORMap("b", value_type=AWORSet)
    b.update("k", lambda s: s.add(1))
    with pytest.raises(TypeError):
        a.merge(b)  # type: ignore[arg-type]
    assert a.value == {}


def test_ormap_nested_values_converge_after_a_remove_and_re_add() -> None:
    """Regression: a key's nested value used to restart from an empty CRDT after a remove, so
    its nested dots restarted at 1 and the re-add reused a dot that a concurrent update still
    held with other content. A key's view was then the merge of two nested values that
    disagreed on one dot, and the result depended on set iteration order (hash seed,
    insertion history): the later nested write f=2 (ts 3) could lose to f=1 (ts 1). Tried
    with 32 replica-id pairs, as each used to lose with probability about 1/2.
    """
    wrong = []
    for i in range(32):
        ra, rb = f"a{i}", f"b{i}"
        a: ORMap[LWWMap] = ORMap(ra, value_type=LWWMap)
        b: ORMap[LWWMap] = ORMap(rb, value_type=LWWMap)
        b.merge(a.update("k", lambda m, ra=ra: m.set("f", 1, ts(1, 0, ra))))
        removed = a.remove("k")
        re_added = a.update("k", lambda m, ra=ra: m.set("f", 2, ts(3, 0, ra)))
        concurrent = b.update("k", lambda m, rb=rb: m.set("g", 9, ts(2, 0, rb)))
        a.merge(concurrent)
        b.merge(removed)
        b.merge(re_added)
        assert a == b
        for replica in (a, b):
            if replica.value["k"].get("f") != 2:
                wrong.append((ra, rb, replica.replica, replica.value))
    assert not wrong, f"{len(wrong)} of 64 replicas read a stale nested write: {wrong[:3]}"


def test_ormap_write_after_a_remote_remove_does_not_reuse_nested_dots() -> None:
    """BUG (left by the nested-lineage fix): replica a keeps writing a key under the same
    nested lineage as long as the key is present locally. When a remote remove takes out a's
    own entry while the key survives through b's concurrent update (which saw only an older
    nested value of a's), a's next write continues its lineage from what b's entry holds and
    reuses nested dot (a-lineage, 2), which a's removed entry still holds -- with other
    content -- on every replica that has not seen the remove yet. There the key's view merges
    two nested values that disagree on a dot and drops one write (usually the newest, w), in
    an order that depends on set iteration. Fix idea: start a fresh lineage whenever the
    replica's own previous entry for the key is no longer live (or remember, per key, the
    highest nested counter ever issued and continue from there).
    """
    wrong = []
    for i in range(16):
        a, b, c, d = (ORMap(f"{name}{i}", value_type=AWORSet) for name in "abcd")
        b.merge(a.update("k", lambda s: s.add("x")))
        a.update("k", lambda s: s.add("y"))  # a's nested lineage: x at dot 1, y at dot 2
        c.merge(a)
        d.merge(a)
        concurrent = b.update("k", lambda s: s.add("z"))  # b saw only x
        removed = c.remove("k")  # c saw x and y
        a.merge(removed)
        a.merge(concurrent)
        rewritten = a.update("k", lambda s: s.add("w"))
        d.merge(concurrent)
        d.merge(rewritten)  # d has not seen the remove: y's entry is still live there
        if d.value["k"] != {"x", "y", "z", "w"}:
            wrong.append(sorted(d.value["k"]))
    assert not wrong, f"{len(wrong)} of 16 replicas lost a write: {wrong[:3]}"


# --- LWWMap -------------------------------------------------------------------------------


def test_lwwmap_as_in_the_issue() -> None:
    m, clock = LWWMap(replica="a"), HLC("a")
    m.set("k", 1, clock.now(1_000), ttl_ms=None)
    assert m.get("k") == 1 and m.value == {"k": 1}
    m.delete("k", clock.now(1_001))
    assert m.get("k") is None and m.get("k", "gone") == "gone" and m.value == {}
    assert "k" not in m and m.entry("k") is not None and m.entry("k").deleted  # type: ignore[union-attr]


def test_lwwmap_tie_is_broken_by_writer_id_and_delete_is_a_write() -> None:
    a, b = LWWMap("a"), LWWMap("b")
    da = a.set("k", "from a", ts(10))
    db = b.set("k", "from b", ts(10))
    dd = a.delete("j", ts(10))
    ds = b.set("j", "set by b", ts(10))
    for order in all_orders(da, db, dd, ds):
        c = LWWMap("c")
        for d in order:
            c.merge(d)
        assert c.value == {"k": "from b", "j": "set by b"}
    later_delete = a.delete("k", ts(11))
    b.merge(later_delete)
    assert "k" not in b


def test_lwwmap_ttl_is_judged_against_the_now_you_pass() -> None:
    m = LWWMap("a")
    m.set("k", "v", ts(1_000), ttl_ms=100)
    m.set("forever", 1, ts(1_000))
    assert m.value == {"k": "v", "forever": 1}  # value ignores TTLs
    assert m.value_at(1_099) == {"k": "v", "forever": 1}
    assert m.value_at(1_100) == {"forever": 1}
    assert m.get("k", now_ms=1_099) == "v"
    assert m.get("k", now_ms=1_100) is None
    assert m.get("k", "expired", now_ms=5_000) == "expired"
    assert m.get("k") == "v"
    m.set("k", "renewed", ts(1_200), ttl_ms=100)  # a later write renews it
    assert m.value_at(1_250) == {"k": "renewed", "forever": 1}


def test_lwwmap_compact_drops_old_tombstones_and_expired_entries() -> None:
    m = LWWMap("a")
    m.set("gone", 1, ts(1_000))
    m.delete("gone", ts(1_001))
    m.set("short", 2, ts(1_000), ttl_ms=10)
    m.set("kept", 3, ts(1_000))
    m.delete("recent", ts(5_000))
    before = m.copy()
    assert m.compact(1_001) == 0  # the tombstone is at 1_001: not older than that yet
    assert m.compact(1_010) == 2  # the tombstone at 1_001 and the entry expiring at 1_010
    assert m.entry("gone") is None and m.entry("short") is None
    assert m.entry("recent") is not None and m.value == {"kept": 3}
    # every replica had seen those writes (causally stable): nothing comes back
    m.merge(before.delta_since(m.digest()))
    assert m.entry("gone") is None and m.value == {"kept": 3}
    assert m.compact(10_000) == 1 and m.value == {"kept": 3}


def test_lwwmap_compact_has_separate_horizons_for_tombstones_and_expiry() -> None:
    """Expired entries can go as soon as they expire; tombstones only once causally stable."""
    m = LWWMap("a")
    m.set("short", 1, ts(1_000), ttl_ms=10)
    m.delete("gone", ts(1_000))
    assert m.compact(0, expired_before_ms=1_009) == 0
    assert m.compact(0, expired_before_ms=1_010) == 1  # the tombstone is kept
    assert m.entry("short") is None and m.entry("gone") is not None
    assert m.compact(1_001, expired_before_ms=0) == 1 and m.entry("gone") is None


def test_lwwmap_same_writer_same_timestamp_converges() -> None:
    """BUG: two writes of one key by one writer with the same timestamp (a misused clock) and
    equal encoded values tie completely, so each replica keeps whichever arrived first; the
    docstring of lww_wins promises every replica picks the same winner. The entries differ
    in dot (and here TTL), so the replicas are not equal and read different TTLs."""
    a = LWWMap("a")
    first = a.set("k", 1, ts(10, 0, "a"))
    second = a.set("k", 1, ts(10, 0, "a"), ttl_ms=5)
    x, y = LWWMap("x"), LWWMap("y")
    for d in (first, second):
        x.merge(d)
    for d in (second, first):
        y.merge(d)
    assert x == y
    assert x.value_at(100) == y.value_at(100)


def test_keys_and_elements_are_normalized() -> None:
    assert normalize_key(["a", [1, bytearray(b"x")]]) == ("a", (1, b"x"))
    m = LWWMap("a")
    m.set(["a", 1], "v", ts(1))
    assert m.get(("a", 1)) == "v" and ("a", 1) in m and list(m) == [("a", 1)]
