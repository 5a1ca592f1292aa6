"""The SharedState value codec: Python values as plain Yjs values a JavaScript client reads.

A value is stored in the document's `data` map as the Yjs value closest to it, so a browser or
Node.js program using `yjs` sees numbers, strings, arrays, objects and `Uint8Array`s. Only what
JavaScript cannot carry exactly is tagged with a one-key object (docs/guides/yjs-clients.md):

| Python                                    | in the Y.Map (JavaScript)            |
|-------------------------------------------|--------------------------------------|
| None, bool, str                           | null, boolean, string                |
| int with abs(i) <= 2**53                  | number                               |
| int beyond that (still int64)             | {"$int": "9007199254740993"}         |
| float, except integral ones below         | number (also inf, -inf, NaN)         |
| float with an integral value in int64     | {"$float": 2}  (2.0, -0.0, 21.0)     |
| bytes, bytearray                          | Uint8Array                           |
| list, tuple                               | array                                |
| dict with str keys                        | object                               |
| dict with an int or bytes key, or exactly | {"$map": [[key, value], ...]}        |
| one key that starts with "$"              |                                      |

Reading turns a number into an int when it is integral and within int64 (what a JS client
writes as `3` reads back as `3`), else a float; a BigInt into an int; a Uint8Array into bytes.
A one-key object whose tag is malformed reads back as a plain dict, so a client's odd value
never makes a read fail. A dict stored as an object reads back with its keys sorted: a Yjs
object keeps no order, and sorting makes every node read the same.
"""

from __future__ import annotations

from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SAFE_INT = 2**53
"""The largest magnitude up to which every int is exactly a JavaScript number."""
MAX_DEPTH = 64
FLOAT_TAG = "$float"
INT_TAG = "$int"
MAP_TAG = "$map"
_SCALAR_BYTES = 9  # msgpack's widest number: the size estimate of a number, bool or null
_CONTAINER_BYTES = 5  # msgpack's widest array or map header


def encode_value(value: Any, max_bytes: int) -> Any:
    """`value` as the Yjs value SharedState stores; TypeError/ValueError if it cannot be
    stored exactly (types other than None, bool, int, float, str, bytes, list, tuple, dict;
    ints outside int64; dict keys other than str/int/bytes; a lone surrogate; nesting deeper
    than MAX_DEPTH) or when its size (about its msgpack size) exceeds `max_bytes`."""
    kind = type(value)
    if kind is str:  # the common cases first: no recursion, no size walk
        size = len(value) if value.isascii() else _utf8_size(value)
        stored: Any = value
    elif kind is int:
        return _encode_int(value)
    elif kind is float:
        return _encode_float(value)
    elif value is None or kind is bool:
        return value
    else:
        stored, size = _encode(value, 0)
    if size > max_bytes:
        raise ValueError(f"value is {size} bytes encoded, more than max_value_bytes={max_bytes}")
    return stored


def decode_value(stored: Any) -> Any:
    """The Python value of a stored Yjs value (inverse of encode_value; JS values too)."""
    kind = type(stored)
    if kind is float:
        if INT64_MIN <= stored < 2**63 and stored.is_integer():
            return int(stored)
        return stored
    if kind is str or kind is int or kind is bool or stored is None:
        return stored
    if kind is bytearray or kind is bytes:
        return bytes(stored)
    if kind is list:
        return [decode_value(item) for item in stored]
    if kind is dict:
        if len(stored) == 1:
            tagged = _decode_tag(stored)
            if tagged is not _NOT_A_TAG:
                return tagged
        # a Yjs object keeps no key order (yrs holds a hash map): sorted, every node agrees
        return {key: decode_value(stored[key]) for key in sorted(stored)}
    return stored  # nothing else comes out of pycrdt; kept as is rather than failing a read


def _encode_int(value: int) -> Any:
    if -SAFE_INT <= value <= SAFE_INT:
        return value
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"int {value} is outside the int64 range SharedState stores")
    # not a Yjs BigInt: yrs 0.x writes one that a double can almost hold (2**63 - 1) as a
    # double, and a peer reads it back rounded
    return {INT_TAG: str(value)}


def _encode_float(value: float) -> Any:
    if INT64_MIN <= value < 2**63 and value.is_integer():
        return {FLOAT_TAG: value}  # would read back as an int otherwise
    return value


def _utf8_size(text: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValueError(f"value cannot be encoded: {exc}") from None


def _encode(value: Any, depth: int) -> tuple[Any, int]:
    """(stored form, size estimate) of any value, checked all the way down."""
    kind = type(value)
    if kind is str:
        return value, _CONTAINER_BYTES + (len(value) if value.isascii() else _utf8_size(value))
    if kind is int:
        return _encode_int(value), _SCALAR_BYTES
    if kind is float:
        return _encode_float(value), _SCALAR_BYTES
    if value is None or kind is bool:
        return value, 1
    if kind is bytes:
        return value, _CONTAINER_BYTES + len(value)
    if kind is bytearray:
        return bytes(value), _CONTAINER_BYTES + len(value)
    if kind is list or kind is tuple or kind is dict:
        if depth >= MAX_DEPTH:
            raise ValueError(f"value nests deeper than {MAX_DEPTH} levels")
        if kind is dict:
            return _encode_dict(value, depth)
        size = _CONTAINER_BYTES
        items = []
        for item in value:
            stored, item_size = _encode(item, depth + 1)
            items.append(stored)
            size += item_size
        return items, size
    raise TypeError(
        f"{kind.__name__} cannot be stored in SharedState "
        "(use None, bool, int, float, str, bytes, list, tuple or dict)"
    )


def _encode_dict(value: dict[Any, Any], depth: int) -> tuple[Any, int]:
    size = _CONTAINER_BYTES
    if len(value) == 1:
        (only,) = value
        plain = not (type(only) is str and only.startswith("$"))
    else:
        plain = True
    pairs: list[list[Any]] = []
    for key, item in value.items():
        key_kind = type(key)
        if key_kind is not str:
            if key_kind is not int and key_kind is not bytes:
                raise TypeError(f"dict keys must be str, int or bytes, got {key_kind.__name__}")
            plain = False
        stored_key, key_size = _encode(key, depth + 1)
        stored, item_size = _encode(item, depth + 1)
        pairs.append([stored_key, stored])
        size += key_size + item_size
    if plain:
        return {key: stored for key, stored in pairs}, size
    return {MAP_TAG: pairs}, size + _CONTAINER_BYTES


_NOT_A_TAG = object()


def _decode_tag(stored: dict[Any, Any]) -> Any:
    """The value of a one-key tagged object, or _NOT_A_TAG."""
    ((tag, payload),) = stored.items()
    if tag == FLOAT_TAG and type(payload) in (float, int):
        return float(payload)
    if tag == INT_TAG and type(payload) is str and len(payload) <= 20:
        try:
            number = int(payload)
        except ValueError:
            return _NOT_A_TAG
        return number if INT64_MIN <= number <= INT64_MAX else _NOT_A_TAG
    if tag == MAP_TAG and type(payload) is list:
        out: dict[Any, Any] = {}
        for pair in payload:
            if type(pair) is not list or len(pair) != 2:
                return _NOT_A_TAG
            key = decode_value(pair[0])
            if type(key) not in (str, int, bytes):
                return _NOT_A_TAG
            out[key] = decode_value(pair[1])
        return out
    return _NOT_A_TAG
