"""Decoders facing hostile input: the only exception they may raise is DecodeError.

Every `T.from_wire` gets random msgpack-like objects, random fields behind a valid header, and
valid encodings with one corruption (a replaced, deleted or inserted element at a random path,
a changed tag or version, a truncated list, a swapped type, a hostile size such as 2**70 or -1,
a bad interval in a causal context). Whatever a decoder accepts must be a sound replica: it
round-trips, reads, digests, copies and merges like any other. `delta_since` gets the same
treatment with digests, and YDoc's `merge`/`delta_since` get random bytes.
"""

from __future__ import annotations

from typing import Any

import pytest
from crdt_strategies import (
    ALL_KINDS,
    INDEX,
    KINDS,
    Kind,
    digest_pool,
    join,
    mutated,
    packed_round_trip,
    replica_pool,
    same,
    scaled,
    wire_objects,
    wire_pool,
)
from hypothesis import given, note
from hypothesis import strategies as st

from crdts import (
    AWORSet,
    DecodeError,
    DotContext,
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

DECODERS: list[Any] = [
    GCounter,
    PNCounter,
    LWWRegister,
    MVRegister,
    AWORSet,
    ORMap,
    LWWMap,
    MemberTable,
    YDoc,
    Timestamp,
    DotContext,
]
HEADERS = [
    ("gcounter", 4),
    ("pncounter", 5),
    ("lwwregister", 6),
    ("mvregister", 5),
    ("aworset", 5),
    ("ormap", 6),
    ("lwwmap", 5),
    ("members", 4),
    ("ydoc", 4),
]
YJS_HOSTILE_COUNT = 2**20


def leading_varint(data: bytes) -> int:
    """The unsigned LEB128 number at the start of `data` (how Yjs encodes its first count)."""
    value = 0
    for shift, byte in enumerate(data[:10]):
        value |= (byte & 0x7F) << (7 * shift)
        if not byte & 0x80:
            break
    return value


def hostile_to_yjs(obj: Any) -> bool:
    """Whether `obj` holds bytes whose leading count makes pycrdt allocate gigabytes first.

    Such input is the subject of test_ydoc.py::test_hostile_leading_count_is_rejected_cheaply;
    here it would only make the fuzzing slow, so it is kept away from YDoc.
    """
    if isinstance(obj, bytes | bytearray):
        return leading_varint(obj) >= YJS_HOSTILE_COUNT
    if isinstance(obj, list | tuple):
        return any(hostile_to_yjs(x) for x in obj)
    if isinstance(obj, dict):
        return any(hostile_to_yjs(x) for x in obj.values())
    return False


def pick(pool: list[Any], index: int) -> Any:
    """pool[index] modulo its length (noted, since the index alone says little)."""
    item = pool[index % len(pool)]
    note(f"picked: {item!r}")
    return item


def empty_like(x: Any) -> Any:
    """A fresh replica of the same type (and value type, for an ORMap) as `x`."""
    if isinstance(x, ORMap):
        return ORMap("empty", value_type=x.value_type)
    return type(x)("empty")


def check_decoder(decoder: Any, obj: Any) -> Any:
    """Feed `obj` to `decoder.from_wire`: DecodeError, or a sound value (which is returned)."""
    if decoder is YDoc and hostile_to_yjs(obj):
        return None
    try:
        x = decoder.from_wire(obj)
    except DecodeError:
        return None
    note(f"{decoder.__name__} accepted it: {x!r}")
    wire = x.to_wire()
    assert same(decoder.from_wire(wire), x)
    assert same(decoder.from_wire(packed_round_trip(wire)), x)
    if decoder in (Timestamp, DotContext):
        return x
    x.digest()
    assert same(x.copy(), x) or isinstance(x, YDoc)  # YDoc: see test_ydoc.py
    assert same(join(x, x), x)
    assert same(join(empty_like(x), x), x), "accepted a state that merging does not rebuild"
    if not isinstance(x, YDoc):
        x.value  # noqa: B018 - reading must not raise
    return x


def check_against(kind: Kind, decoded: Any, valid: Any) -> None:
    """An accepted replica merges both ways with a valid one, and delta_since works on it.

    (Only that they do not raise: a corrupted encoding can name a dot or a Yjs clock that
    the valid replica holds with other content, and no decoder can tell a forged dot.)
    """
    if decoded is None or not isinstance(decoded, kind.cls):
        return
    if isinstance(decoded, ORMap) and decoded.value_type is not valid.value_type:
        return
    assert join(decoded, valid).to_wire() is not None
    assert join(valid, decoded).to_wire() is not None
    assert join(valid, decoded.delta_since(packed_round_trip(valid.digest()))).digest() is not None


@scaled(0.5)
@given(wire_objects)
def test_from_wire_on_random_objects_raises_only_decode_error(obj: Any) -> None:
    for decoder in DECODERS:
        check_decoder(decoder, obj)


@scaled(0.4)
@given(st.sampled_from(HEADERS), st.data())
def test_from_wire_on_random_fields_behind_a_valid_header(
    header: tuple[str, int], data: st.DataObject
) -> None:
    tag, length = header
    fields = data.draw(st.lists(wire_objects, min_size=length - 2, max_size=length - 2))
    obj = [tag, 1, *fields]
    for decoder in DECODERS:
        check_decoder(decoder, obj)


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.name)
@scaled(0.25)
@given(data=st.data())
def test_from_wire_on_corrupted_encodings_raises_only_decode_error(
    kind: Kind, data: st.DataObject
) -> None:
    original = pick(wire_pool(kind.name), data.draw(INDEX))
    obj = data.draw(mutated(original, max_corruptions=2), label="corrupted")
    valid = pick(replica_pool(kind.name), data.draw(INDEX))
    for decoder in DECODERS:
        decoded = check_decoder(decoder, obj)
        if decoder is kind.cls:
            check_against(kind, decoded, valid)


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.name)
@scaled(0.25)
@given(data=st.data())
def test_delta_since_on_corrupted_digests_raises_only_decode_error(
    kind: Kind, data: st.DataObject
) -> None:
    valid = pick(replica_pool(kind.name), data.draw(INDEX))
    valid_digest = pick(digest_pool(kind.name), data.draw(INDEX))
    if data.draw(INDEX) % 4:
        digest = data.draw(mutated(valid_digest, max_corruptions=3), label="digest")
    else:
        digest = data.draw(wire_objects, label="digest")
    if isinstance(valid, YDoc) and hostile_to_yjs(digest):
        return
    try:
        delta = valid.delta_since(digest)
    except DecodeError:
        return
    # whatever it returns must merge cleanly and leave the recipient including the sender
    other = kind.make("other", 3)
    assert same(join(join(other, delta), valid), join(other, valid))


yjs_bytes = st.binary(max_size=64).filter(lambda b: leading_varint(b) < YJS_HOSTILE_COUNT)


@st.composite
def corrupted_yjs(draw: st.DrawFn) -> bytes:
    """A valid update or state vector with bytes replaced, deleted or inserted."""
    pool = [w[3] for w in wire_pool("ydoc")] + digest_pool("ydoc")
    data = bytearray(pick(pool, draw(INDEX)))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        how = ["replace", "delete", "insert"][draw(INDEX) % 3]
        if how == "insert" or at == len(data):
            data.insert(at, draw(st.integers(0, 255)))
        elif how == "delete":
            del data[at]
        else:
            data[at] = draw(st.integers(0, 255))
    if leading_varint(bytes(data)) >= YJS_HOSTILE_COUNT:
        data[0] = 1
    return bytes(data)


@given(st.one_of(yjs_bytes, corrupted_yjs()), st.sampled_from(range(3)))
def test_ydoc_merge_and_delta_since_on_random_bytes_raise_only_decode_error(
    data: bytes, which: int
) -> None:
    doc = KINDS["ydoc"].make("fuzzed", 0)
    doc.merge(wire_pool("ydoc")[which + 1][3])
    try:
        doc.delta_since(data)
    except DecodeError:
        pass
    try:
        doc.merge(data)
    except DecodeError:
        pass
    # whatever got in, the document is still a sound replica
    assert same(YDoc.from_wire(doc.to_wire()), doc)
    assert same(join(doc, doc), doc)


@scaled(0.4)
@given(st.dictionaries(st.sampled_from(["a", "b", ""]), st.lists(st.integers(-1, 7), max_size=6)))
def test_dot_context_decoder_accepts_only_canonical_intervals(obj: dict[str, list[int]]) -> None:
    try:
        context = DotContext.from_wire(obj)
    except DecodeError:
        return
    assert DotContext.of(context.dots()) == context  # the one canonical form of its dots
    assert DotContext.from_wire(context.to_wire()) == context
