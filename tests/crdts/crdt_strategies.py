"""Hypothesis strategies and helpers shared by the CRDT property tests.

The central piece is a simulation (`Sim`): 2-4 replicas with distinct replica ids run a
random sequence of operations interleaved with merges of full states and of the deltas the
operations returned (any delta, in any order, possibly twice), so the replicas hold concurrent
histories. Timestamps for the LWW types come from one HLC per replica fed random wall times;
half the time all clocks share one node name, so timestamps of different replicas can tie
exactly and the writer id has to break the tie.

A simulation is decoded from one drawn byte string (`histories`, `sim_from_bytes`), with the
ops taken from small pools that hold every shape of value, key and element (`sample_op`):
Hypothesis' cost per draw dominates these tests, and one draw per simulation is what lets
500 examples per law fit in the CI time budget. Failing tests note the decoded simulation.

Known implementation bugs are kept out of the pools on purpose (each has a failing test of
its own, named in a comment next to the pool that avoids it), so that one bug does not mask
everything else a law could find.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import random
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
from hypothesis import settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text

from crdts import (
    HLC,
    STATUSES,
    AWORSet,
    GCounter,
    LWWMap,
    LWWRegister,
    MemberTable,
    MVRegister,
    ORMap,
    PNCounter,
    Timestamp,
    YDoc,
)

INT64_MIN = -(2**63)
UINT64_MAX = 2**64 - 1
REPLICA_IDS = ("r-b", "r-a", "r-d", "r-c")  # distinct; index order differs from id order

Op = tuple[Any, ...]


# --- plain helpers --------------------------------------------------------------------------


def scaled(fraction: float) -> settings:
    """The loaded profile's example count times `fraction` (at least 10): for fuzz and model
    tests parametrized many times over, so that the suite fits its time budget. The laws and
    the convergence tests always run the profile's full count."""
    return settings(max_examples=max(10, int(settings.default.max_examples * fraction)))


def packed_round_trip(obj: Any) -> Any:
    """`obj` after msgpack encoding and decoding, as a peer would receive it."""
    return msgpack.unpackb(msgpack.packb(obj), raw=False, strict_map_key=False)


def canonical_update(doc: YDoc) -> bytes:
    """A YDoc's full update re-encoded by a fresh document: the same for the same content.

    `YDoc.__eq__` compares raw `full_update()` bytes, which depend on how Yjs happened to
    split its blocks, so `x.copy() == x` can be False (test_ydoc.py,
    test_copy_equals_original_after_concurrent_inserts). The laws compare this instead.
    """
    fresh = Doc()
    fresh.apply_update(doc.full_update())
    return bytes(fresh.get_update())


def same(a: Any, b: Any) -> bool:
    """Equality of replicated state (for YDoc: of canonical updates)."""
    if isinstance(a, YDoc) and isinstance(b, YDoc):
        return canonical_update(a) == canonical_update(b)
    return bool(a == b)


def join(first: Any, *others: Any) -> Any:
    """A fresh replica holding first ⊔ others (none of the arguments is modified)."""
    out = first.copy()
    for other in others:
        assert out.merge(other) is None
    return out


def leq(b: Any, a: Any) -> bool:
    """b ≤ a in the join semilattice: a ⊔ b == a."""
    return same(join(a, b), a)


# --- value strategies -----------------------------------------------------------------------

# NaN is left out: a replica holding NaN is not == to its own copy (see test_types.py,
# test_nan_value_replica_equals_its_copy). Lone surrogates are left out too (st.text never
# makes them): msgpack cannot encode them (test_bad_input.py, test_lone_surrogate_is_rejected).
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(INT64_MIN, UINT64_MAX),
    st.integers(-3, 3),
    st.floats(allow_nan=False),
    st.text(max_size=6),
    st.binary(max_size=6),
)
dict_keys = st.one_of(st.text(max_size=4), st.integers(-5, 5), st.binary(max_size=3))
values = st.recursive(
    scalars | st.binary(max_size=4).map(bytearray),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(dict_keys, inner, max_size=3),
    ),
    max_leaves=4,
)
"""Anything a replica accepts as a value (LWWRegister, LWWMap, member metadata values)."""

VALUE_POOL = [
    None,
    True,
    0,
    -1,
    2**64 - 1,
    -(2**63),
    1.5,
    -0.0,
    float("inf"),
    "",
    "é",
    b"",
    b"\x00\xff",
    bytearray(b"ba"),
    [],
    (1, "t"),
    [1, [2, (3,)]],
    {},
    {"k": [1, b"v"], 7: None, b"b": {"x": 1.0}},
]
"""The values the LWW types are written with in the simulations: one of every shape."""

# Set elements / map keys / MVRegister values: scalars and tuples, including a list spelling
# of a tuple (it must read back as the tuple). 1/True/1.0 and 0.0/-0.0 are kept apart: equal
# keys of different types read back differently per replica (test_types.py,
# test_equal_elements_of_different_types_read_back_alike).
ELEMENTS = ["a", "b", "c", 7, -25, None, b"x", ("t", 1), ["t", 1]]
KEYS = ["k1", "k2", 3, ("t", 1)]


# --- kinds ----------------------------------------------------------------------------------


class Kind:
    """One CRDT type under test: how to make a replica and how to run an op on it.

    The ops themselves come from `sample_op` (one plain-tuple shape per type).
    """

    __slots__ = ("apply", "cls", "make", "max_steps", "name")

    def __init__(
        self,
        name: str,
        cls: Any,
        make: Callable[[str, int], Any],
        apply: Callable[[Any, Op, Timestamp], Any],
        max_steps: int | None = None,
    ) -> None:
        self.name, self.cls, self.make, self.apply = name, cls, make, apply
        self.max_steps = max_steps
        """A cap on simulation steps for this kind (YDoc's steps cost ~10x the others')."""

    def __repr__(self) -> str:
        return self.name


def _apply_gcounter(x: GCounter, op: Op, ts: Timestamp) -> GCounter:
    """Run a GCounter op."""
    return x.increment(op[1])


def _apply_pncounter(x: PNCounter, op: Op, ts: Timestamp) -> PNCounter:
    """Run a PNCounter op."""
    return x.increment(op[1]) if op[0] == "inc" else x.decrement(op[1])


def _apply_lwwregister(x: LWWRegister, op: Op, ts: Timestamp) -> LWWRegister:
    """Run an LWWRegister op."""
    return x.set(op[1], ts)


def _apply_mvregister(x: MVRegister, op: Op, ts: Timestamp) -> MVRegister:
    """Run an MVRegister op."""
    return x.set(op[1])


def _apply_aworset(x: AWORSet, op: Op, ts: Timestamp) -> AWORSet:
    """Run an AWORSet op."""
    if op[0] == "add":
        return x.add(op[1])
    if op[0] == "remove":
        return x.remove(op[1])
    return x.clear()


def _apply_ormap(x: ORMap[Any], op: Op, ts: Timestamp) -> ORMap[Any]:
    """Run an ORMap op; the nested op is ('inc', n) for counters or ('add'|'remove', e)."""
    if op[0] == "remove":
        return x.remove(op[1])
    nested_kind, arg = op[2]

    def mutate(v: Any) -> None:
        if nested_kind == "inc":
            v.increment(arg)
        elif nested_kind == "add":
            v.add(arg)
        else:
            v.remove(arg)

    return x.update(op[1], mutate)


def _apply_lwwmap(x: LWWMap, op: Op, ts: Timestamp) -> LWWMap:
    """Run an LWWMap op."""
    if op[0] == "set":
        return x.set(op[1], op[2], ts, ttl_ms=op[3])
    return x.delete(op[1], ts)


NODES = ("n1", "n2", "n3")
ADDRESSES = ("", "10.0.0.1:7946", "10.0.0.2:7946")
YDOC_VALUES = (None, True, 0, 5, -7, "", "v")
"""Yjs stores numbers as doubles: ints stay small (2**64 even panics, see test_bad_input.py)."""
METADATA = ({}, {"zone": "eu"}, {"zone": "us", "weight": 2, "tags": ["a", b"b"]})
"""Member metadata comes from this pool: two dicts equal up to key order are a known bug
(test_members.py, test_equal_claims_with_reordered_metadata_converge)."""


def _apply_members(x: MemberTable, op: Op, ts: Timestamp) -> MemberTable:
    """Run a MemberTable op."""
    if op[0] == "alive":
        return x.alive(op[1], op[2], op[3], METADATA[op[4]])
    return getattr(x, op[0])(op[1], op[2])


_ROOTS: dict[int, dict[str, Any]] = {}
"""id(YDoc) -> its declared roots (YDoc is unhashable); dropped when the YDoc is collected."""


def _make_ydoc(replica: str, index: int) -> YDoc:
    """A YDoc with a fixed Yjs client id (reproducible runs) and its three roots declared."""
    return declare_roots(YDoc(replica, client_id=index + 1))


def declare_roots(doc: YDoc) -> YDoc:
    """Declare the roots the YDoc ops use, so that `doc.value` can read them."""
    if id(doc) not in _ROOTS:
        _ROOTS[id(doc)] = {
            "m": doc.get("m", Map),
            "a": doc.get("a", Array),
            "t": doc.get("t", Text),
        }
        weakref.finalize(doc, _ROOTS.pop, id(doc), None)
    return doc


def _apply_ydoc(doc: YDoc, op: Op, ts: Timestamp) -> bytes:
    """Run a YDoc op in one transaction and return its update."""
    roots = _ROOTS[id(doc)]

    def change(_: Any) -> None:
        name = op[0]
        if name == "mset":
            roots["m"][op[1]] = op[2]
        elif name == "mdel":
            if op[1] in roots["m"]:
                del roots["m"][op[1]]
        elif name == "ains":
            arr = roots["a"]
            arr.insert(min(op[1], len(arr)), op[2])
        elif name == "adel":
            arr = roots["a"]
            if len(arr):
                del arr[op[1] % len(arr)]
        elif name == "tins":
            text = roots["t"]
            text.insert(min(op[1], len(text)), op[2])
        else:
            text = roots["t"]
            if len(text):
                start = op[1] % len(text)
                del text[start : min(start + op[2], len(text))]

    return doc.transact(change)


KINDS: dict[str, Kind] = {
    k.name: k
    for k in [
        Kind("gcounter", GCounter, lambda r, i: GCounter(r), _apply_gcounter),
        Kind("pncounter", PNCounter, lambda r, i: PNCounter(r), _apply_pncounter),
        Kind("lwwregister", LWWRegister, lambda r, i: LWWRegister(r), _apply_lwwregister),
        Kind("mvregister", MVRegister, lambda r, i: MVRegister(r), _apply_mvregister),
        Kind("aworset", AWORSet, lambda r, i: AWORSet(r), _apply_aworset),
        Kind("ormap_pncounter", ORMap, lambda r, i: ORMap(r, value_type=PNCounter), _apply_ormap),
        Kind("ormap_aworset", ORMap, lambda r, i: ORMap(r, value_type=AWORSet), _apply_ormap),
        Kind("lwwmap", LWWMap, lambda r, i: LWWMap(r), _apply_lwwmap),
        Kind("members", MemberTable, lambda r, i: MemberTable(r), _apply_members),
        Kind("ydoc", YDoc, _make_ydoc, _apply_ydoc, max_steps=7),
    ]
}
ALL_KINDS = list(KINDS.values())


# --- simulations ----------------------------------------------------------------------------


@dataclasses.dataclass
class Write:
    """One operation run during a simulation, with what the model tests need to know of it."""

    index: int
    replica: int
    op: Op
    ts: Timestamp
    delta: Any
    past: frozenset[int]
    """The indexes of the writes the replica had seen (causal past), tracked through merges
    of full states only; deltas carry no history, so it is exact only without delta steps."""


class Sim:
    """Replicas of one kind plus the history that made them."""

    def __init__(self, kind: Kind, n: int, shared_clock: bool) -> None:
        self.kind = kind
        self.ids = REPLICA_IDS[:n]
        self.replicas = [kind.make(rid, i) for i, rid in enumerate(self.ids)]
        self.clocks = [HLC("clock" if shared_clock else rid) for rid in self.ids]
        self.writes: list[Write] = []
        self.seen: list[set[int]] = [set() for _ in self.ids]
        self.steps: list[tuple[Any, ...]] = []
        self.shared_clock = shared_clock

    def __repr__(self) -> str:
        lines = [
            f"Sim({self.kind.name}, replicas={list(self.ids)}, shared_clock={self.shared_clock})"
        ]
        lines += [f"  {step!r}" for step in self.steps]
        return "\n".join(lines)

    @property
    def deltas(self) -> list[Any]:
        """Every delta the operations returned, in the order they were made."""
        return [w.delta for w in self.writes]

    def run(self, step: tuple[Any, ...]) -> None:
        """Apply one step: ('op', i, op, wall) | ('full', i, j) | ('delta', i, k)."""
        self.steps.append(step)
        if step[0] == "op":
            _, i, op, wall = step
            self.write(i, op, wall)
        elif step[0] == "full":
            _, i, j = step
            self.replicas[i].merge(self.replicas[j])
            self.clocks[i].observe(self.clocks[j].last, 0)
            self.seen[i] |= self.seen[j]
        elif self.writes:
            _, i, k = step
            self.replicas[i].merge(self.writes[k % len(self.writes)].delta)

    def write(self, i: int, op: Op, wall: int) -> Any:
        """Run `op` on replica i with a fresh timestamp; record and return its delta."""
        ts = self.clocks[i].now(wall)
        delta = self.kind.apply(self.replicas[i], op, ts)
        index = len(self.writes)
        self.writes.append(Write(index, i, op, ts, delta, frozenset(self.seen[i])))
        self.seen[i].add(index)
        return delta

    def full_join(self) -> Any:
        """The join of every replica: what anyone who got everything must hold."""
        return join(self.kind.make("joined", 9), *self.replicas)


def decode_frame(frame: int, n: int, deltas: bool) -> tuple[Any, ...]:
    """A step without its op from one int: the low 2 bits pick op/op/full/delta, the next 2
    the replica, the rest the other replica, the delta index or the wall time."""
    i, rest = (frame >> 2) % n, frame >> 4
    selector = frame & 3
    if selector < 2:
        return ("op", i, None, rest % 41)
    if selector == 2 or not deltas:
        return ("full", i, rest % n)
    return ("delta", i, rest)


MAX_STEPS = 10
histories = st.binary(min_size=16, max_size=4 * MAX_STEPS + 8)
"""What `sim_from_bytes` decodes a simulation from (for tests that decode it themselves).

At least 16 bytes: left to itself Hypothesis draws ~6 bytes on average, i.e. two steps and
one op, far too little history to find anything. 16..48 bytes give ~9 steps on average.
"""


class ByteRandom:
    """The part of `random.Random` that `sample_op` uses, read from Hypothesis-drawn bytes.

    A whole simulation is decoded from one `st.binary()` draw: one draw instead of dozens
    makes generation ~10x cheaper, which is what lets 500 examples per law fit in CI time.
    Shrinking the bytes shrinks the history (fewer steps, first choices everywhere).
    """

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def exhausted(self) -> bool:
        """Whether every drawn byte has been used."""
        return self.pos >= len(self.data)

    def byte(self) -> int:
        """The next byte (0 once exhausted)."""
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return b

    def randrange(self, n: int) -> int:
        """An int in [0, n)."""
        return self.byte() % n

    def randint(self, a: int, b: int) -> int:
        """An int in [a, b]."""
        return a + self.byte() % (b - a + 1)

    def choice(self, seq: Any) -> Any:
        """An item of `seq`."""
        return seq[self.byte() % len(seq)]


def sim_from_bytes(kind: Kind, data: bytes, max_steps: int = MAX_STEPS, deltas: bool = True) -> Sim:
    """Decode a simulation of 2-4 replicas and up to `max_steps` steps from `data`."""
    rng = ByteRandom(data)
    n = 2 + rng.randrange(3)
    sim = Sim(kind, n, shared_clock=bool(rng.randrange(2)))
    max_steps = min(max_steps, kind.max_steps or max_steps)
    while not rng.exhausted() and len(sim.steps) < max_steps:
        step = decode_frame(rng.byte(), n, deltas)
        if step[0] == "op":
            sim.run(("op", step[1], sample_op(kind, rng), step[3]))
        else:
            sim.run(step)
    return sim


def sims(kind: Kind, max_steps: int = MAX_STEPS, deltas: bool = True) -> st.SearchStrategy[Sim]:
    """Simulations of `kind`: 2-4 replicas after up to `max_steps` random steps (without
    delta steps if not `deltas`, so that `Write.past` is the exact causal past)."""
    return st.binary(min_size=16, max_size=4 * max_steps + 8).map(
        lambda data: sim_from_bytes(kind, data, max_steps, deltas)
    )


def op_lists(kind: Kind, max_ops: int = 20) -> st.SearchStrategy[list[Op]]:
    """Lists of up to `max_ops` ops of `kind`, decoded from one drawn byte string."""

    def decode(data: bytes) -> list[Op]:
        rng, ops = ByteRandom(data), []
        while not rng.exhausted() and len(ops) < max_ops:
            ops.append(sample_op(kind, rng))
        return ops

    return st.binary(min_size=max_ops, max_size=3 * max_ops).map(decode)


choice_bytes = st.binary(min_size=12, max_size=24)
"""Bytes for a ByteRandom that picks replicas, orders and ops in a test (at least 12, so the
picks are not all 'the first one')."""


# --- fixed histories (cheap valid encodings for the fuzz tests) -------------------------------


def sample_op(kind: Kind, rng: Any) -> Op:
    """A random op of `kind`, drawn from a `random.Random` or a `ByteRandom`."""
    name = kind.name
    if name == "gcounter":
        return ("inc", rng.randint(0, 5))
    if name == "pncounter":
        return (rng.choice(["inc", "dec"]), rng.randint(0, 5))
    if name == "lwwregister":
        return ("set", rng.choice(VALUE_POOL))
    if name == "mvregister":
        return ("set", rng.choice(ELEMENTS))
    if name == "aworset":
        what = rng.choice(["add", "remove", "add", "remove", "clear"])
        return ("clear",) if what == "clear" else (what, rng.choice(ELEMENTS))
    if name.startswith("ormap"):
        key = rng.choice(KEYS)
        if rng.randrange(3) == 2:
            return ("remove", key)
        if name == "ormap_pncounter":
            return ("update", key, ("inc", rng.randint(-3, 3)))
        return ("update", key, (rng.choice(["add", "remove"]), rng.choice(ELEMENTS)))
    if name == "lwwmap":
        key = rng.choice(KEYS)
        if rng.randrange(3) == 2:
            return ("delete", key)
        return ("set", key, rng.choice(VALUE_POOL), rng.choice([None, 5, 20]))
    if name == "members":
        status, node, inc = rng.choice(STATUSES), rng.choice(NODES[:2]), rng.randint(0, 2)
        if status == "alive":
            return ("alive", node, inc, rng.choice(ADDRESSES), rng.randrange(len(METADATA)))
        return (status, node, inc)
    what = rng.choice(["mset", "mdel", "ains", "adel", "tins", "tdel"])
    if what == "mset":
        return ("mset", rng.choice("xyz"), rng.choice(YDOC_VALUES))
    if what == "mdel":
        return ("mdel", rng.choice("xyz"))
    if what == "ains":
        return ("ains", rng.randint(0, 4), rng.choice(YDOC_VALUES))
    if what == "tins":
        return ("tins", rng.randint(0, 8), rng.choice(["a", "bc"]))
    return (what, rng.randint(0, 8), rng.randint(1, 3))


@functools.cache
def fixed_sims(name: str) -> list[Sim]:
    """Three deterministic histories of 3 replicas of kind `name`, with concurrent writes."""
    kind, out = KINDS[name], []
    for seed in range(3):
        rng = random.Random(seed)
        sim = Sim(kind, 3, shared_clock=bool(seed % 2))
        for _ in range(16):
            roll, i = rng.random(), rng.randrange(3)
            if roll < 0.55:
                sim.run(("op", i, sample_op(kind, rng), rng.randint(0, 40)))
            elif roll < 0.8:
                sim.run(("full", i, rng.randrange(3)))
            else:
                sim.run(("delta", i, rng.randrange(64)))
        out.append(sim)
    return out


@functools.cache
def wire_pool(name: str) -> list[Any]:
    """Valid `to_wire` encodings of kind `name`: replicas, deltas and an empty replica
    (shared: callers must not modify them)."""
    kind = KINDS[name]
    things = [kind.make("empty", 0)]
    for sim in fixed_sims(name):
        things += sim.replicas + [d for d in sim.deltas if not isinstance(d, bytes)]
    return [x.to_wire() for x in things]


@functools.cache
def replica_pool(name: str) -> list[Any]:
    """The replicas of the fixed histories of kind `name` (callers must not modify them)."""
    return [r for sim in fixed_sims(name) for r in sim.replicas]


@functools.cache
def digest_pool(name: str) -> list[Any]:
    """Valid digests of kind `name`'s replicas and of an empty one (shared, do not modify)."""
    kind = KINDS[name]
    replicas = [kind.make("empty", 0)] + [r for sim in fixed_sims(name) for r in sim.replicas]
    return [r.digest() for r in replicas]


# --- wire fuzzing ---------------------------------------------------------------------------

HOSTILE = [
    -1,
    0,
    1,
    2**31,
    2**32,
    2**63 - 1,
    2**63,
    2**64,
    2**70,
    -(2**63) - 1,
    -(2**70),
    1.5,
    float("inf"),
    True,
    False,
    None,
    "",
    "x",
    "ormap",
    b"",
    b"\xff",
    [],
    {},
    [[]],
    [1, 0],
    [0, 1],
    [2, 1],
    [1, 1],
    [1, 2, 2, 3],
    [1, 3, 2, 4],
    [1, 2, 3],
    [2**63 - 1, 2**63],
    {"": [1, 2]},
    {"a": []},
    {"a": [0, 1]},
    {1: [1, 2]},
    {"a": [5, 2]},
]
"""Values a hostile or corrupted peer might put anywhere: sizes, bad intervals, wrong types."""

wire_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.sampled_from(HOSTILE),
)
wire_objects = st.recursive(
    wire_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(
            st.one_of(st.text(max_size=4), st.integers(-3, 3), st.binary(max_size=2)),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=10,
)
"""Random msgpack-like objects (ints may be out of msgpack's range on purpose)."""


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path (list indexes and dict keys) into `obj`, the root first."""
    yield prefix
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from _paths(item, (*prefix, i))
    elif isinstance(obj, dict):
        for key, item in obj.items():
            yield from _paths(item, (*prefix, key))


def _at(obj: Any, path: tuple[Any, ...]) -> Any:
    """The node of `obj` at `path`."""
    for step in path:
        obj = obj[step]
    return obj


def _swap_type(node: Any) -> Any:
    """The same content in a different container or scalar type."""
    if isinstance(node, list):
        return dict(enumerate(node)) if node else {}
    if isinstance(node, dict):
        return [x for pair in node.items() for x in pair]
    if isinstance(node, bool):
        return int(node)
    if isinstance(node, int):
        return str(node) if node % 2 else float(node)
    if isinstance(node, str):
        return node.encode()
    if isinstance(node, bytes):
        return node.decode("latin-1")
    return [node]


INDEX = st.integers(0, 2**16 - 1)
"""An index to take modulo a length (one prebuilt strategy instead of one per draw)."""
_HOW = st.sampled_from(
    ["replace", "hostile", "swap", "delete", "insert", "truncate", "duplicate", "rekey"]
)
_HOSTILE = st.sampled_from(HOSTILE)
_NEW_KEY = st.one_of(st.text(max_size=3), st.integers(), st.binary(max_size=2))
# (the strategies are built once: building one per draw costs more than the draw)


@st.composite
def mutated(draw: st.DrawFn, obj: Any, max_corruptions: int = 1) -> Any:
    """`obj` (a valid wire encoding) with 1..max_corruptions random corruptions."""
    for _ in range(1 + draw(INDEX) % max_corruptions):
        obj = _corrupted_once(draw, obj)
    return obj


def _corrupted_once(draw: st.DrawFn, obj: Any) -> Any:
    """`obj` with one random corruption at a random path (`obj` itself is not modified)."""
    obj = copy.deepcopy(obj)
    paths = list(_paths(obj))
    leaves = [p for p in paths if not isinstance(_at(obj, p), list | dict)] or paths
    among = leaves if draw(INDEX) % 3 else paths  # mostly leaves: that is where values live
    path = among[draw(INDEX) % len(among)]
    parent = None
    node = obj
    for step in path:
        parent, node = node, node[step]
    how = draw(_HOW)
    if how == "replace":
        new: Any = draw(wire_objects)
    elif how == "hostile":
        new = copy.deepcopy(draw(_HOSTILE))
    elif how == "swap":
        new = _swap_type(node)
    elif isinstance(node, list) and node:
        i = draw(INDEX) % len(node)
        new = list(node)
        if how == "delete":
            del new[i]
        elif how == "insert":
            new.insert(i, draw(wire_scalars))
        elif how == "truncate":
            new = new[:i]
        elif how == "duplicate":
            new.insert(i, copy.deepcopy(new[i]))
        else:
            new[i], new[-1] = new[-1], new[i]
    elif isinstance(node, dict) and node:
        old_key = list(node)[draw(INDEX) % len(node)]
        new = dict(node)
        if how == "delete":
            del new[old_key]
        else:
            new[draw(_NEW_KEY)] = new.pop(old_key)
    else:
        new = copy.deepcopy(draw(_HOSTILE))
    if parent is None:
        return new
    parent[path[-1]] = new
    return obj
