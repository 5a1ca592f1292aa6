"""The SWIM member table: precedence, deltas, digests and the corner cases of its tie-break."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from crdt_strategies import join, packed_round_trip, values
from hypothesis import example, given
from hypothesis import strategies as st

from crdts import DecodeError, Member, MemberTable


def merged(*deltas: MemberTable) -> MemberTable:
    """A fresh table that merged `deltas` in this order."""
    t = MemberTable("r")
    for d in deltas:
        t.merge(d)
    return t


def test_member_table_as_in_the_issue() -> None:
    mt = MemberTable("a")
    mt.alive("n1", 1, "10.0.0.1:7946", {"zone": "eu"})
    mt.suspect("n1", 1)
    mt.alive("n2", 0)
    mt.dead("n2", 0)
    mt.alive("n3", 0)
    mt.left("n3", 0)
    assert mt.value == {"n1": "suspect", "n2": "dead", "n3": "left"}


def test_at_equal_incarnation_left_beats_dead_beats_suspect_beats_alive() -> None:
    claims = [MemberTable(f"w{i}") for i in range(4)]
    deltas = [
        claims[0].alive("n", 3, "10.0.0.1:1"),
        claims[1].suspect("n", 3),
        claims[2].dead("n", 3),
        claims[3].left("n", 3),
    ]
    for order in itertools.permutations(deltas):
        assert merged(*order).value == {"n": "left"}
    for order in itertools.permutations(deltas[:3]):
        assert merged(*order).value == {"n": "dead"}
    for order in itertools.permutations(deltas[:2]):
        assert merged(*order).value == {"n": "suspect"}


def test_a_higher_incarnation_wins_whatever_the_status() -> None:
    a, b = MemberTable("a"), MemberTable("b")
    dead = a.dead("n", 4)
    refuted = b.alive("n", 5, "10.0.0.9:7946")  # the node refutes with a higher incarnation
    for order in itertools.permutations([dead, refuted]):
        t = merged(*order)
        assert t.value == {"n": "alive"}
        assert t.get("n") == Member(5, "alive", "10.0.0.9:7946", {})
    left = b.left("n", 5)
    stale_alive = a.alive("n", 4)
    for order in itertools.permutations([left, stale_alive, dead, refuted]):
        assert merged(*order).value == {"n": "left"}


def test_a_claim_returns_a_delta_only_if_it_is_news() -> None:
    t = MemberTable("a")
    assert t.alive("n", 2).value == {"n": "alive"}
    assert t.alive("n", 2).value == {}  # already known
    assert t.suspect("n", 1).value == {}  # older incarnation
    assert t.dead("n", 2).value == {"n": "dead"}
    assert t.suspect("n", 2).value == {}  # weaker status at the same incarnation
    assert t.value == {"n": "dead"}


def test_status_claims_keep_the_known_address_and_metadata() -> None:
    t = MemberTable("a")
    t.alive("n", 1, "10.0.0.1:7946", {"zone": "eu", "tags": ("a", bytearray(b"b"))})
    assert t.get("n") == Member(1, "alive", "10.0.0.1:7946", {"zone": "eu", "tags": ["a", b"b"]})
    delta = t.suspect("n", 1)
    assert delta.get("n") == Member(
        1, "suspect", "10.0.0.1:7946", {"zone": "eu", "tags": ["a", b"b"]}
    )
    fresh = MemberTable("b")
    assert fresh.dead("n", 0).get("n") == Member(0, "dead", "", {})


def test_forget_is_local_only() -> None:
    a, b = MemberTable("a"), MemberTable("b")
    b.merge(a.left("n", 1))
    assert b.forget("n") and not b.forget("n")
    assert "n" not in b and len(b) == 0
    b.merge(a.delta_since(b.digest()))  # anti-entropy brings it back, as documented
    assert b.value == {"n": "left"}


def test_delta_since_sends_exactly_the_news() -> None:
    a, b = MemberTable("a"), MemberTable("b")
    for node in ("n1", "n2", "n3"):
        b.merge(a.alive(node, 1))
    a.dead("n2", 1)
    b.alive("n3", 2)
    a.alive("n4", 0)
    delta = a.delta_since(packed_round_trip(b.digest()))
    assert delta.value == {"n2": "dead", "n4": "alive"}
    b.merge(delta)
    assert b.value == {"n1": "alive", "n2": "dead", "n3": "alive", "n4": "alive"}
    assert a.delta_since(b.digest()).value == {}


def test_delta_since_rejects_a_malformed_digest_with_decode_error() -> None:
    t = MemberTable("a")
    t.alive("n", 1)
    for bad in [
        None,
        [],
        {"n": None},
        {"n": [1, 0]},
        {"n": ["1", 0, 0]},
        {"n": [None, 0, 0]},
        {"n": [1, 0.5, 0]},
        {"n": (1, 0, 0, 0)},
    ]:
        if bad == {"n": None}:
            continue  # None means "unknown": the member is sent
        with pytest.raises(DecodeError):
            t.delta_since(bad)


def claim_with(metadata: dict[str, Any]) -> MemberTable:
    """A delta of a fresh table claiming node n alive at incarnation 1 with `metadata`."""
    return MemberTable("w").alive("n", 1, "10.0.0.1:7946", metadata)


def test_equal_claims_with_reordered_metadata_converge() -> None:
    """BUG: two claims equal but for the key order of their metadata (a node re-announcing
    itself with a rebuilt dict) are == Members, so Member.beats() says neither supersedes the
    other, yet their precedence bytes differ (msgpack keeps key order). A third claim whose
    bytes sort between them then wins or loses depending on merge order: the replicas end
    with different members. Fix: encode metadata canonically (sorted keys) in _details()."""
    d1 = claim_with({"a": 1, "b": 2})
    d2 = claim_with({"b": 2, "a": 1})
    d3 = claim_with({"a": 2, "b": 2})
    named = {"d1": d1, "d2": d2, "d3": d3}
    results = {
        order: merged(*(named[name] for name in order)).get("n")
        for order in itertools.permutations(named)
    }
    winners = {str(m) for m in results.values()}
    assert len(winners) == 1, f"merge order decides the winner: {results}"


def test_fingerprint_does_not_depend_on_metadata_key_order_history() -> None:
    """BUG: `_put` keeps the old details checksum when the new member's metadata is == to
    the old one, but the checksum hashes the key order. A table that heard the node with
    {"x", "y"} and then {"y", "x"} has another digest and fingerprint than an equal table
    that only heard the second: push-pull anti-entropy sees a difference that never goes."""
    first = MemberTable("w").alive("n", 1, "addr", {"x": 1, "y": 2})
    second = MemberTable("w").alive("n", 2, "addr", {"y": 2, "x": 1})
    both, only_second = merged(first, second), merged(second)
    assert both == only_second
    assert both.fingerprint() == only_second.fingerprint()
    assert both.delta_since(only_second.digest()).value == {}


def test_claim_validates_and_normalizes_like_alive() -> None:
    """BUG: MemberTable.claim() checks the status and incarnation but not the address and
    metadata. A metadata value msgpack cannot encode raises only in `_put`, after the member
    has been stored (the table is left half-updated, its digest stale), and tuples or
    bytearrays are stored as given, so the table no longer equals its own wire round trip."""
    t = MemberTable("a")
    t.alive("n", 1)
    before = t.to_wire()
    for bad_member in [
        Member(2, "alive", "addr", {"k": object()}),
        Member(2, "alive", 5, {}),  # type: ignore[arg-type]
        Member(2, "alive", "addr", {"k": 2**64}),
        Member(2, "alive", "addr", {1: "non-str key"}),  # type: ignore[dict-item]
    ]:
        with pytest.raises((TypeError, ValueError)):
            t.claim("n", bad_member)
        assert t.to_wire() == before
    t.claim("n", Member(3, "alive", "addr", {"k": (1, bytearray(b"x"))}))
    assert t.get("n") == Member(3, "alive", "addr", {"k": [1, b"x"]})
    assert MemberTable.from_wire(packed_round_trip(t.to_wire())) == t


def test_claim_rejects_unknown_statuses() -> None:
    t = MemberTable("a")
    with pytest.raises(ValueError):
        t.claim("n", Member(1, "zombie", "", {}))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        t.claim("n", Member(True, "alive", "", {}))
    assert len(t) == 0


def test_merge_is_a_join_on_concrete_conflicts() -> None:
    a, b, c = MemberTable("a"), MemberTable("b"), MemberTable("c")
    a.alive("n", 1, "x", {"v": 1})
    b.alive("n", 1, "y", {"v": 2})  # same incarnation and status: the details decide
    c.suspect("n", 1)
    for x, y in itertools.permutations([a, b, c], 2):
        assert join(x, y) == join(y, x)
    assert join(join(a, b), c) == join(a, join(b, c))
    assert join(a, b, c).value == {"n": "suspect"}


def test_digest_is_a_snapshot() -> None:
    """A caller that edits the digest it was handed (say, to merge several digests) must not
    rewrite the table's digest, fingerprint or delta_since decisions: the dict is fresh and
    its (incarnation, rank, crc) entries are immutable."""
    t = MemberTable("a")
    t.alive("n", 1)
    before = (t.digest(), t.fingerprint())
    handed_out = t.digest()
    with pytest.raises(TypeError):
        handed_out["n"][0] = 99  # type: ignore[index]
    handed_out["n"] = (99, 0, 0)
    handed_out["m"] = (1, 0, 0)
    assert (t.digest(), t.fingerprint()) == before
    assert t.delta_since({"n": [1, 0, before[0]["n"][2]]}).value == {}


metadata = st.dictionaries(st.text(max_size=3), values, max_size=3)


@example({"x": {"a": 1}}, {"x": [["a", 1]]})
@given(metadata, metadata)
def test_distinct_claims_at_equal_precedence_are_strictly_ordered(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    """Two different claims at the same incarnation and status: exactly one supersedes the
    other (else merge order picks the winner), and tables holding them have different
    fingerprints (else anti-entropy takes them for in sync). The details must therefore be
    encoded injectively: a sorted-pairs encoding that also fits a list of pairs (a map
    {"a": 1} and a list [["a", 1]]) collides."""
    a = MemberTable("w").alive("n", 1, "addr", first)
    b = MemberTable("w").alive("n", 1, "addr", second)
    if a == b:
        return
    ma, mb = a.get("n"), b.get("n")
    assert ma is not None and mb is not None
    assert ma.beats(mb) != mb.beats(ma)
    assert merged(a, b) == merged(b, a)
    assert a.fingerprint() != b.fingerprint()


operations = st.lists(
    st.tuples(
        st.sampled_from(["alive", "suspect", "dead", "left", "forget", "advance"]),
        st.sampled_from(["n1", "n2", "n3"]),
        st.integers(0, 3),
        st.sampled_from(["", "10.0.0.1:7946", "10.0.0.2:7946"]),
    ),
    max_size=30,
)


@given(operations)
def test_kept_digest_and_fingerprint_equal_a_fresh_computation(ops: list[Any]) -> None:
    """The digest and fingerprint are updated entry by entry as news arrives (and as members
    are forgotten); after any history they equal those of a table decoded from the wire,
    which computes both from scratch."""
    t = MemberTable("a")
    for op, node, incarnation, address in ops:
        if op == "forget":
            t.forget(node)
        elif op == "advance":  # a status change keeping address and metadata, as claims do
            before = t.copy()
            status = ["suspect", "dead", "left"][incarnation % 3]
            held = t.advance(node, incarnation, status)
            claimed = before.copy()
            news = before.get(node) is not None and bool(
                getattr(claimed, status)(node, incarnation)
            )
            assert (held is not None) == news and t == (claimed if news else before)
        elif op == "alive":
            t.alive(node, incarnation, address)
        else:
            getattr(t, op)(node, incarnation)
    fresh = MemberTable.from_wire(packed_round_trip(t.to_wire()))
    assert fresh.digest() == t.digest()
    assert fresh.fingerprint() == t.fingerprint()
    assert t.copy().fingerprint() == t.fingerprint()


def test_restore_alive_adds_only_unknown_nodes_as_alive_at_incarnation_zero() -> None:
    t = MemberTable("a")
    t.dead("b", 3)
    added = t.restore_alive({"b": "b:1", "c": "c:1", "d": ""})
    assert added == ["c", "d"]
    assert t.get("b") == Member(3, "dead")
    assert t.get("c") == Member(0, "alive", "c:1")
    assert t.members["d"] == Member(0, "alive", "")
    built = MemberTable("a")
    built.dead("b", 3)
    built.alive("c", 0, "c:1")
    built.alive("d", 0)
    assert t.digest() == built.digest() and t.fingerprint() == built.fingerprint()


def test_restore_alive_refuses_bad_ids_and_addresses() -> None:
    t = MemberTable("a")
    with pytest.raises(TypeError):
        t.restore_alive({"": "x"})
    with pytest.raises(TypeError):
        t.restore_alive({"b": 7})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        t.restore_alive({"b": "\ud800"})
    assert len(t) == 0


def test_the_members_view_is_live_and_read_only() -> None:
    t = MemberTable("a")
    view = t.members
    t.alive("b", 1)
    assert view["b"] == Member(1, "alive")
    with pytest.raises(TypeError):
        view["c"] = Member(0, "alive")  # type: ignore[index]


def test_a_plain_table_decodes_whole_and_any_bad_entry_is_refused() -> None:
    # plain tables (no metadata) take a column-by-column path; one odd entry anywhere sends
    # the whole table down the entry-by-entry checks, which name what is wrong
    t = MemberTable("a")
    for i in range(50):
        t.alive(f"n{i}", i, f"10.0.0.{i}:7946")
    t.dead("n7", 7)
    wire = packed_round_trip(t.to_wire())
    assert MemberTable.from_wire(wire) == t
    assert MemberTable.from_wire(wire).digest() == t.digest()
    _, _, _, flat = wire
    for index, bad in [
        (0, ""),  # an empty node id
        (5, "n0"),  # a repeated node id
        (1, -1),  # a negative incarnation
        (1, 2**63),  # beyond int64
        (1, True),  # a bool is not an incarnation
        (2, "zombie"),  # an unknown status
        (3, 7),  # an address that is not a str
        (4, [1]),  # metadata that is not a map
        (4, {1: "x"}),  # a metadata key that is not a str
    ]:
        entries = list(flat)
        entries[index] = bad
        with pytest.raises(DecodeError):
            MemberTable.from_wire(["members", 1, "a", entries])
    with_metadata = list(flat)
    with_metadata[4] = {"zone": "b"}  # valid, only not plain
    assert MemberTable.from_wire(["members", 1, "a", with_metadata]).get("n0") == Member(
        0, "alive", "10.0.0.0:7946", {"zone": "b"}
    )
