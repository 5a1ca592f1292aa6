"""Algebraic laws every CRDT here must satisfy, on replicas with random concurrent histories.

For each type: merge is a join (commutative, associative, idempotent); a mutator's delta is
as good as the full state for a recipient that has seen everything else of the writer;
`delta_since(digest)` brings a replica up to date; fingerprints agree with equality; the
pieces of `split()` add up to the whole in any order and any part of them is safe to merge;
and the wire encoding round-trips, also through msgpack.

All laws of one type are checked on the same drawn simulation (one Hypothesis test per type):
Hypothesis' per-example cost is larger than that of checking a law, and this keeps 500
examples per law within the CI time budget. The simulation and the choices (which replicas,
which op) are decoded from two drawn byte strings, and noted for the failure report. Each
law is its own function, so a failure names the law.
"""

from __future__ import annotations

from typing import Any

import pytest
from crdt_strategies import (
    ALL_KINDS,
    ByteRandom,
    Kind,
    Sim,
    choice_bytes,
    histories,
    join,
    leq,
    packed_round_trip,
    same,
    sample_op,
    sim_from_bytes,
)
from hypothesis import given, note

from crdts import YDoc


def law_commutative(a: Any, b: Any) -> None:
    """a ⊔ b == b ⊔ a."""
    assert same(join(a, b), join(b, a)), "merge is not commutative"


def law_associative(a: Any, b: Any, c: Any) -> None:
    """(a ⊔ b) ⊔ c == a ⊔ (b ⊔ c)."""
    assert same(join(join(a, b), c), join(a, join(b, c))), "merge is not associative"


def law_idempotent(a: Any, deltas: list[Any]) -> None:
    """a ⊔ a == a, and merging a delta a second time changes nothing."""
    assert same(join(a, a), a), "merge is not idempotent"
    for delta in deltas:
        once = join(a, delta)
        assert same(join(once, delta), once), "merging a delta twice differs from once"


def law_mutator_delta(sim: Sim, writer: int, recipient: Any, op: Any, wall: int) -> None:
    """For a recipient that has seen all of `writer`: recipient ⊔ delta == recipient ⊔ writer."""
    recipient = join(recipient, sim.replicas[writer])
    delta = sim.write(writer, op, wall)
    assert same(join(recipient, delta), join(recipient, sim.replicas[writer])), (
        "a mutator's delta is not equivalent to the writer's full state"
    )


def law_delta_since(a: Any, b: Any) -> None:
    """b ⊔ a.delta_since(b.digest()) includes a, keeps b, and equals a when b ≤ a."""
    delta = a.delta_since(packed_round_trip(b.digest()))  # digests travel over the wire
    b2 = join(b, delta)
    assert same(join(b2, a), b2), "b + delta_since(b.digest()) does not include a"
    assert leq(b, b2), "b + delta_since(b.digest()) lost part of b"
    if leq(b, a):
        assert same(b2, a), "delta_since does not bring a replica that is behind to par"
    behind = join(a, b)  # b <= behind by construction
    caught_up = join(b, behind.delta_since(packed_round_trip(b.digest())))
    assert same(caught_up, behind), "delta_since does not bring a replica that is behind to par"


def law_fingerprint(a: Any, b: Any) -> None:
    """Equal states have equal fingerprints, and different states different ones."""
    if isinstance(a, YDoc):  # see test_ydoc.py, test_copy_equals_original_after_concurrent_inserts
        return
    for x, y in ((a, b), (join(a, b), join(b, a)), (a, a.copy())):
        assert (x.fingerprint() == y.fingerprint()) == (x == y), "fingerprint disagrees with =="
    assert isinstance(a.fingerprint(), bytes)


def law_split(piece_of: Any, recipient: Any, max_entries: int, subset: list[int]) -> None:
    """split() pieces merged in any order add up to the whole; any part of them is safe."""
    if isinstance(piece_of, YDoc | bytes):  # a Yjs update has no split()
        return
    whole = join(recipient, piece_of)
    pieces = piece_of.split(max_entries)
    assert pieces and all(isinstance(p, type(piece_of)) for p in pieces)
    assert same(join(recipient, *pieces), whole), "the pieces do not add up to the delta"
    assert same(join(recipient, *reversed(pieces)), whole), "the pieces depend on their order"
    part = [pieces[i % len(pieces)] for i in subset]
    assert leq(join(recipient, *part), whole), "a part of the pieces is not below the whole"


def law_wire_round_trip(kind: Kind, x: Any) -> None:
    """from_wire(to_wire(x)) == x, directly and through msgpack."""
    wire = x.to_wire()
    decoded = kind.cls.from_wire(wire)
    assert same(decoded, x), "from_wire(to_wire(x)) != x"
    assert decoded.replica == x.replica
    assert same(kind.cls.from_wire(packed_round_trip(wire)), x), "msgpack round trip != x"
    if not isinstance(x, YDoc):  # a YDoc's value depends on the roots declared on it, and
        # its update bytes on how yrs split the blocks (same() compares a canonical encoding)
        assert packed_round_trip(decoded.to_wire()) == packed_round_trip(wire)
        assert decoded.value == x.value
        assert decoded.digest() == x.digest()


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.name)
@given(history=histories, choices=choice_bytes)
def test_laws(kind: Kind, history: bytes, choices: bytes) -> None:
    sim = sim_from_bytes(kind, history)
    pick = ByteRandom(choices)
    n = len(sim.replicas)
    i, j, k = pick.randrange(n), pick.randrange(n), pick.randrange(n)
    a, b, c = sim.replicas[i], sim.replicas[j], sim.replicas[k]
    max_entries = pick.randint(1, 3)
    subset = [pick.randrange(8) for _ in range(pick.randrange(4))]
    op, wall = sample_op(kind, pick), pick.randrange(41)
    note(f"{sim!r}\na=r{i} b=r{j} c=r{k} max_entries={max_entries} subset={subset} op={op}")

    law_commutative(a, b)
    law_associative(a, b, c)
    law_idempotent(a, sim.deltas[-2:])
    law_delta_since(a, b)
    law_fingerprint(a, b)
    if not isinstance(a, YDoc):  # what b lacks, removals included, is the telling case
        for piece_of in (a.delta_since(b.digest()), a, *sim.deltas[-2:]):
            law_split(piece_of, b, max_entries, subset)
    for x in [a, b, *(d for d in sim.deltas[-1:] if not isinstance(d, bytes))]:
        law_wire_round_trip(kind, x)
    # last, as it runs one more operation on replica i
    law_mutator_delta(sim, i, join(b, sim.replicas[i]), op, wall)
