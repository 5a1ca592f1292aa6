"""The SharedState value codec seen from JavaScript: what Python stores is made of values a JS
client holds exactly, and what a JS client writes reads back sensibly in Python."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycrdt import Doc, Map

from foundation_p2p.services.values import (
    FLOAT_TAG,
    INT64_MAX,
    INT64_MIN,
    INT_TAG,
    MAP_TAG,
    SAFE_INT,
    decode_value,
    encode_value,
)

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(INT64_MIN, INT64_MAX)
    | st.floats()
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=5) | st.integers(INT64_MIN, INT64_MAX) | st.binary(max_size=3),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


def js_exact(stored: Any) -> bool:
    """Whether a stored value holds only what JavaScript represents exactly, tags aside."""
    if stored is None or type(stored) in (bool, str, bytes):
        return True
    if type(stored) is int:
        return -SAFE_INT <= stored <= SAFE_INT
    if type(stored) is float:  # an integral float would read back as an int
        return not (stored.is_integer() and INT64_MIN <= stored < 2**63)
    if type(stored) is list:
        return all(js_exact(item) for item in stored)
    if type(stored) is dict:
        if set(stored) == {FLOAT_TAG}:
            return type(stored[FLOAT_TAG]) is float
        if set(stored) == {INT_TAG}:
            return type(stored[INT_TAG]) is str
        if set(stored) == {MAP_TAG}:
            return all(js_exact(k) and js_exact(v) for k, v in stored[MAP_TAG])
        if len(stored) == 1 and next(iter(stored)).startswith("$"):
            return False  # would be taken for a tag
        return all(type(k) is str and js_exact(v) for k, v in stored.items())
    return False


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@given(values)
def test_what_python_stores_is_exact_in_javascript_and_reads_back_on_a_peer(value: Any) -> None:
    stored = encode_value(value, 1 << 20)
    assert js_exact(stored)
    doc: Doc[Any] = Doc()
    doc.get("data", type=Map)["k"] = stored
    peer: Doc[Any] = Doc()
    peer.apply_update(doc.get_update())  # as a Yjs update: what a JS client receives
    assert same(decode_value(peer.get("data", type=Map)["k"]), value)


JS_WRITES = [  # (what pycrdt reads of a value a JS client wrote, what SharedState returns)
    (3.0, 3),
    (-0.0, 0),
    (2.5, 2.5),
    (1e300, 1e300),
    (float("inf"), float("inf")),
    (bytearray(b"\x00\x01"), b"\x00\x01"),
    (12, 12),  # a JS BigInt
    ({"b": 1.0, "a": [2.0, "x", None, True]}, {"a": [2, "x", None, True], "b": 1}),
    ({FLOAT_TAG: 2.0}, 2.0),
    ({INT_TAG: "9007199254740993"}, 9007199254740993),
    ({MAP_TAG: [[1.0, "a"], [bytearray(b"k"), "b"]]}, {1: "a", b"k": "b"}),
    # malformed tags read as plain dicts: a client's odd value never fails a read
    ({MAP_TAG: 5.0}, {MAP_TAG: 5}),
    ({MAP_TAG: [[[1.0], 2.0]]}, {MAP_TAG: [[[1], 2]]}),
    ({MAP_TAG: [[1.0]]}, {MAP_TAG: [[1]]}),
    ({INT_TAG: "twelve"}, {INT_TAG: "twelve"}),
    ({INT_TAG: str(2**70)}, {INT_TAG: str(2**70)}),
    ({FLOAT_TAG: "2"}, {FLOAT_TAG: "2"}),
    ({"$other": 1.0}, {"$other": 1}),
]


@pytest.mark.parametrize(("stored", "expected"), JS_WRITES, ids=repr)
def test_what_a_javascript_client_writes_reads_back_sensibly(stored: Any, expected: Any) -> None:
    assert same(decode_value(stored), expected)


def test_a_python_dict_that_looks_like_a_tag_is_not_taken_for_one() -> None:
    for value in ({"$float": 2.0}, {"$int": "5"}, {"$map": []}, {"$x": 1}):
        stored = encode_value(value, 1024)
        assert set(stored) == {MAP_TAG}
        assert same(decode_value(stored), value)
