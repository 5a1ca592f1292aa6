"""YDoc: a pycrdt (Yjs) document behind the CRDT interface.

Random-bytes fuzzing of merge/delta_since is in test_wire_fuzz.py; values Yjs cannot hold
(2**64, tuple dict keys) are in test_bad_input.py, where they show that YDoc.transact lets a
pyo3 PanicException (a BaseException, not an Exception) escape instead of a ValueError.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from crdt_strategies import canonical_update, declare_roots, same
from pycrdt import Array, Map, Text

from crdts import EMPTY_UPDATE, DecodeError, YDoc
from crdts.ydoc import CHECKPOINT_FLOOR
from tests.yrs_vectors import BAD, BAD_BASE, POISON, POISON_BASE


def set_key(doc: YDoc, key: str, value: object) -> bytes:
    """Set m[key] = value in one transaction; return the delta."""
    return doc.transact(lambda _: doc.get("m", Map).__setitem__(key, value))


def test_ydoc_as_in_the_issue() -> None:
    a, b = YDoc("a"), YDoc("b")
    delta = a.transact(lambda doc: a.get("settings", Map).__setitem__("mode", "auto"))
    assert isinstance(delta, bytes) and delta != EMPTY_UPDATE
    assert b.merge(delta) is None
    assert b.get("settings", Map)["mode"] == "auto"
    assert isinstance(a.digest(), bytes)
    catch_up = a.delta_since(b.digest())
    assert isinstance(catch_up, bytes)
    b.merge(catch_up)
    assert a == b
    assert a.transact(lambda doc: None) == EMPTY_UPDATE  # nothing changed: an empty update
    b.merge(a)  # a whole YDoc merges too
    assert b.get("settings", Map).to_py() == {"mode": "auto"}


def test_delta_since_brings_a_late_replica_up_to_date() -> None:
    a, late = YDoc("a", client_id=1), YDoc("late", client_id=2)
    set_key(a, "x", 1)
    late.merge(a.delta_since(late.digest()))
    a.transact(lambda _: a.get("t", Text).insert(0, "hello"))
    a.transact(lambda _: a.get("l", Array).extend([1, 2, 3]))
    late.merge(a.delta_since(late.digest()))
    for doc in (a, late):
        assert str(doc.get("t", Text)) == "hello" and doc.get("l", Array).to_py() == [1, 2, 3]
    assert same(a, late)


def test_get_takes_only_yjs_root_types() -> None:
    with pytest.raises(TypeError):
        YDoc("a").get("m", dict)  # type: ignore[arg-type]


def test_merge_and_delta_since_reject_non_bytes() -> None:
    doc = YDoc("a")
    with pytest.raises(TypeError):
        doc.merge("not bytes")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        doc.delta_since("not bytes")
    with pytest.raises(DecodeError):
        doc.merge(b"\xff\xff\xff")


def test_from_wire_rejects_bad_input() -> None:
    good = YDoc("a").to_wire()
    for bad in [None, [], good[:3], ["ydoc", 2, "a", good[3]], ["ydoc", 1, "", good[3]],
                ["ydoc", 1, "a", "text"], ["ydoc", 1, 5, good[3]], ["gcounter", 1, "a", {}],
                ["ydoc", 1, "a", b"\x05\x00"]]:  # fmt: skip
        with pytest.raises(DecodeError):
            YDoc.from_wire(bad)


def test_value_after_merging_a_remote_change_to_an_undeclared_root() -> None:
    """BUG: YDoc.value reads pycrdt's Doc._roots, which also lists roots that arrived in a
    remote update but were never declared locally -- as None -- and then calls
    None.to_py(): AttributeError. `value` is documented to cover the declared roots."""
    a, b = YDoc("a"), YDoc("b")
    b.merge(set_key(a, "x", 1))
    assert b.value == {}  # nothing declared on b yet
    b.get("m", Map)
    assert b.value == {"m": {"x": 1.0}}


def concurrent_inserts() -> YDoc:
    """A document where one client's two inserts are split by another client's insert."""
    b, a = YDoc("b", client_id=1), YDoc("a", client_id=2)
    for d in (a, b):
        declare_roots(d)
    b.transact(lambda _: b.get("a", Array).insert(0, None))
    a.merge(b)
    b.transact(lambda _: b.get("a", Array).insert(1, None))
    a.transact(lambda _: a.get("a", Array).insert(1, None))
    joined = b.copy()
    joined.merge(a)
    return joined


def test_copy_equals_original_after_concurrent_inserts() -> None:
    """BUG: YDoc.__eq__ (and fingerprint()) compare raw full_update() bytes, but Yjs may
    encode the same content with different block splits (a copy squashes adjacent blocks
    of one client that the original keeps apart), so `x.copy() == x` is False and equal
    replicas have different fingerprints. Compare a canonical form instead (e.g. the update
    re-encoded by a fresh Doc, as the tests' `canonical_update` does)."""
    x = concurrent_inserts()
    copy = x.copy()
    assert canonical_update(copy) == canonical_update(x)  # same content ...
    assert copy == x  # ... so equal
    assert copy.fingerprint() == x.fingerprint()


def three_updates() -> list[bytes]:
    """Three consecutive updates of one client (each depends on the one before)."""
    src = YDoc("src", client_id=1)
    return [set_key(src, "x", None), set_key(src, "x", 1), set_key(src, "y", None)]


def test_updates_delivered_in_any_order_converge() -> None:
    """BUG (pycrdt 0.14 / yrs pending updates): when two updates of one client arrive
    before the one they depend on, the document keeps only part of them once the missing
    update arrives, so replicas that got the same deltas in different orders differ for
    good. YDoc.merge promises deltas merge in any order; it could keep the updates it
    could not integrate itself and re-apply them, merged, with the next update."""
    updates = three_updates()
    in_order = YDoc("in-order")
    for u in updates:
        in_order.merge(u)
    for order in ([2, 1, 0], [1, 2, 0]):
        doc = YDoc("shuffled")
        for i in order:
            doc.merge(updates[i])
        assert same(doc, in_order), f"order {order} lost updates"
        assert doc.get("m", Map).to_py() == {"x": 1.0, "y": None}


def test_wire_round_trip_keeps_pending_updates() -> None:
    """BUG: an update whose dependencies have not arrived waits inside the Yjs document, but
    full_update() (so to_wire() and copy()) leaves it out: a replica restored from its wire
    encoding, or copied, loses it, and applying the missing dependency later no longer
    brings it back."""
    first, second, _ = three_updates()
    doc = YDoc("a")
    doc.merge(second)  # waits for `first`
    restored, copied = YDoc.from_wire(doc.to_wire()), doc.copy()
    for d in (doc, restored, copied):
        d.merge(first)
    assert doc.get("m", Map).to_py() == {"x": 1.0}
    assert same(restored, doc)
    assert same(copied, doc)


def test_delta_since_carries_what_a_full_merge_carries() -> None:
    """BUG: another face of the pending-update problem. A document holding an update whose
    dependency is missing sometimes puts it in full_update() (behind a Yjs 'skip'), so
    merging the whole YDoc delivers it, but get_update(state_vector) -- delta_since() --
    never does: `b + a.delta_since(b.digest())` then lacks something `b + a` has. (Found by
    test_laws[ydoc]; whether full_update() includes the pending update depends on its
    content, see test_wire_round_trip_keeps_pending_updates for the opposite case.)"""
    first, _, third = three_updates()
    a, b = YDoc("a"), YDoc("b")
    a.merge(third)  # waits for the second update
    b.merge(first)
    via_delta = b.copy()
    via_delta.merge(a.delta_since(b.digest()))
    via_full = b.copy()
    via_full.merge(a)
    assert same(via_delta, via_full)


def test_failed_transaction_does_not_lose_its_changes() -> None:
    """BUG: if `change` raises half-way, the edits made before the error stay in the local
    document (Yjs cannot roll back) but no delta carries them: transact raises, and the
    next transact starts by clearing what was captured. A peer fed only the returned deltas
    then never converges (the next update even waits forever for the lost one). Either
    undo the partial change or ship it with the next delta."""
    doc, peer = YDoc("a", client_id=1), YDoc("b", client_id=2)

    def half_done(_: object) -> None:
        m = doc.get("m", Map)
        m["ok"] = 1
        m["bad"] = object()

    with pytest.raises(TypeError):
        doc.transact(half_done)
    peer.merge(set_key(doc, "next", 2))
    assert same(peer, doc)


HOSTILE_PROBE = textwrap.dedent(
    """
    import resource
    from crdts import DecodeError, YDoc

    doc = YDoc("x")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for call in (doc.delta_since, doc.merge):
        try:
            call(bytes.fromhex("c2aed472"))
        except DecodeError:
            pass
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB on Linux")
def test_hostile_leading_count_is_rejected_cheaply() -> None:
    """BUG (DoS): the first varint of a Yjs update or state vector is a count that yrs
    pre-allocates for. Four bytes (c2 ae d4 72: 2**28 clients) make merge() and
    delta_since() allocate and touch ~0.5 GB and take ~1 s before failing; eight bytes get
    ~1 GB. YDoc sits on the wire boundary: it should reject a count larger than the input
    could hold (each entry needs >= 2 bytes) before calling pycrdt. Measured in a fresh
    process as peak-RSS growth."""
    env = {**os.environ, "RUST_BACKTRACE": "0"}
    probe = subprocess.run(
        [sys.executable, "-c", HOSTILE_PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    growth_mib = int(probe.stdout.strip()) / 1024
    assert growth_mib < 64, f"4 hostile bytes made the process grow by {growth_mib:.0f} MiB"


def test_a_local_batch_survives_a_remote_merge_in_its_middle() -> None:
    """Sets gathered with open_local() are one delta; a remote merge (or any other YDoc call)
    closes the batch first, so none of its changes is tagged remote or lost."""
    doc, peer, remote = YDoc("a", client_id=1), YDoc("b", client_id=2), YDoc("c", client_id=3)
    m = doc.get("m", Map)
    doc.open_local()
    m["x"] = 1
    doc.merge(set_key(remote, "r", 3))  # closes the batch
    doc.open_local()
    m["y"] = 2
    assert doc.digest() == doc.digest()  # reads close it too
    doc.open_local()
    m["z"] = 3
    delta = doc.take_local()
    assert delta is not None and doc.take_local() is None
    peer.merge(delta)
    assert peer.get("m", Map).to_py() == {"x": 1.0, "y": 2.0, "z": 3.0}  # no "r": not ours
    peer.merge(doc)
    assert same(peer, doc)


def test_set_local_joins_the_batch_and_reopens_it_after_a_merge() -> None:
    doc, peer, remote = YDoc("a", client_id=1), YDoc("b", client_id=2), YDoc("c", client_id=3)
    m = doc.get("m", Map)
    doc.set_local(m, "x", b"one")
    doc.set_local(m, "nested", {"list": [1, "two"]})
    doc.merge(set_key(remote, "r", 3))  # closes the batch; the next set opens a new one
    doc.set_local(m, "y", "two")
    assert m["x"] == b"one" and m["y"] == "two"  # visible before the batch is taken
    delta = doc.take_local()
    assert delta is not None and doc.take_local() is None
    peer.merge(delta)
    assert peer.get("m", Map).to_py() == {"x": b"one", "nested": {"list": [1.0, "two"]}, "y": "two"}


def test_remote_merges_are_checked_against_a_checkpoint_that_follows_local_writes() -> None:
    """A remote update is refused if it would break the document, and the checkpoint the
    replica is rebuilt from follows local writes, so a good update building on them is taken."""
    doc, peer = YDoc("a", client_id=1), YDoc("b", client_id=2)
    peer.merge(set_key(doc, "x", 1))
    doc.merge(set_key(peer, "y", 2))  # the checkpoint exists from here on
    for i in range(3):
        peer.merge(set_key(doc, f"local{i}", i))  # logged for a rebuild
    doc.merge(set_key(peer, "local0", "overwritten by b"))
    assert doc.get("m", Map)["local0"] == "overwritten by b"
    assert same(YDoc.from_wire(doc.to_wire()), doc)


def test_a_node_that_only_writes_keeps_no_checkpoint() -> None:
    doc = YDoc("a")
    for i in range(100):
        set_key(doc, f"k{i}", i)
    assert doc._checkpoint is None and doc._logged == []


def test_the_recovery_log_stays_within_the_document_size() -> None:
    """The checkpoint is re-encoded once the updates logged since outgrow it: what a node holds
    for recovery is bounded by about twice the encoded document, however long it runs."""
    doc, peer = YDoc("a", client_id=1), YDoc("b", client_id=2)
    largest = 0
    for i in range(3000):
        update = set_key(peer, f"k{i % 50}", "v" * 40 + str(i))
        largest = max(largest, len(update))
        doc.merge(update)
        set_key(doc, f"mine{i % 50}", i)
        assert doc._checkpoint is not None
        bound = max(len(doc._checkpoint), CHECKPOINT_FLOOR) + 2 * largest
        assert doc._logged_bytes <= bound
    assert doc._logged_bytes > 0  # the log is in use, not emptied on every merge
    assert same(YDoc.from_wire(doc.to_wire()), doc)


class FakePanic(BaseException):
    """Stands in for pyo3's PanicException (a BaseException too)."""


def test_a_panic_after_a_partial_apply_rebuilds_the_replica_from_the_checkpoint() -> None:
    """yrs may integrate part of an update before it panics: the replica is then rebuilt from
    the checkpoint and the log, keeping every local write and every accepted remote update."""
    doc, peer, rogue = YDoc("a", client_id=1), YDoc("b", client_id=2), YDoc("r", client_id=3)
    doc.merge(set_key(peer, "remote", 1))
    set_key(doc, "local", 2)
    doc.merge(set_key(peer, "remote2", 3))
    doc.transact(lambda _: doc.get("t", Text).insert(0, "kept"))
    before = canonical_update(doc)
    partial = set_key(rogue, "half-applied", 4)
    real_apply = doc.doc.apply_update

    def apply_then_panic(update: bytes) -> None:
        real_apply(partial)
        raise FakePanic("called `Option::unwrap()` on a `None` value")

    doc.doc.apply_update = apply_then_panic  # type: ignore[method-assign]
    with pytest.raises(DecodeError):
        doc.merge(set_key(peer, "never", 5))
    assert doc.generation == 1
    assert canonical_update(doc) == before
    assert doc.value == {"m": {"remote": 1.0, "local": 2.0, "remote2": 3.0}, "t": "kept"}
    set_key(doc, "after", 6)  # the rebuilt Doc takes local writes under the same client id
    doc.merge(peer.delta_since(doc.digest()))  # and remote ones: anti-entropy resends "never"
    other = YDoc("c")
    other.merge(doc.delta_since(other.digest()))
    expected = {"remote": 1.0, "local": 2.0, "remote2": 3.0, "after": 6.0, "never": 5.0}
    assert other.get("m", Map).to_py() == expected


@pytest.mark.parametrize(
    ("base", "bad", "generation"),
    [
        (BAD_BASE, BAD, 1),  # content that does not encode: it had changed the Doc, rebuilt
        (POISON_BASE, POISON, 0),  # yrs panicked before changing anything: the Doc is kept
    ],
    ids=["does-not-encode", "poison"],
)
def test_a_refused_update_leaves_the_document_as_it_was_and_serving(
    base: bytes, bad: bytes, generation: int
) -> None:
    doc = YDoc("a")
    doc.merge(base)
    before = canonical_update(doc)
    with pytest.raises(DecodeError):
        doc.merge(bad)
    assert doc.generation == generation
    assert canonical_update(doc) == before
    assert same(YDoc.from_wire(doc.to_wire()), doc)  # its encoding reads back
    doc.merge(set_key(YDoc("b"), "after", 1))  # merges go on
    assert doc.get("m", Map)["after"] == 1
