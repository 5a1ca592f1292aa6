"""What every CRDT here shares: the protocol, the wire-decoding errors, and the value rules.

Rules of this package: pure data, no I/O, no clock, no randomness. A timestamp or a
`now` is always an argument. Every mutator checks its input before it touches state,
applies itself locally and returns a delta that is itself a value of the same type.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Hashable, Mapping
from typing import Any, ParamSpec, Protocol, Self, TypeVar, runtime_checkable

import msgpack

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
MAX_NESTING = 64

WireValue = Any
"""A tree of msgpack-safe primitives: None, bool, int, float, str, bytes, list, dict."""


class DecodeError(ValueError):
    """Raised by `from_wire` for anything that is not a valid encoding of the type."""


@runtime_checkable
class CRDT(Protocol):
    """A state-based CRDT whose mutators return deltas (delta-state CRDT)."""

    def merge(self, other: Self) -> None:
        """Join `other` (a full replica or a delta) into this replica, in place."""
        ...

    def copy(self) -> Self:
        """An independent replica with the same state."""
        ...

    def digest(self) -> Any:
        """A compact summary of what this replica has (version vector, causal context)."""
        ...

    def delta_since(self, digest: Any) -> Self:
        """The smallest delta that brings a replica at `digest` up to this one."""
        ...

    def fingerprint(self) -> bytes:
        """A short hash of the whole replicated state: equal states, equal fingerprints."""
        ...

    def to_wire(self) -> WireValue:
        """This replica as msgpack-safe primitives."""
        ...

    @classmethod
    def from_wire(cls, obj: WireValue) -> Self:
        """Rebuild a replica from `to_wire` output; raise DecodeError on anything else."""
        ...

    @property
    def value(self) -> Any:
        """The plain Python value an application reads."""
        ...


T = TypeVar("T")
P = ParamSpec("P")


# --- values -------------------------------------------------------------------------------


def normalize_value(value: Any, _depth: int = 0) -> Any:
    """Return `value` in the exact form every replica will read back, or raise TypeError/ValueError.

    Allowed: None, bool, int in [-2**63, 2**64), float, str, bytes/bytearray (read back as
    bytes), list/tuple (read back as list), dict with str/int/bytes keys.
    """
    kind = type(value)
    if kind is str:
        return check_text(value)
    if value is None or kind is bool or kind is float:
        return value
    if kind is int:
        if not INT64_MIN <= value <= UINT64_MAX:
            raise ValueError(f"int {value} is outside the 64-bit range msgpack can carry")
        return value
    if kind is bytes:
        return value
    if _depth >= MAX_NESTING:
        raise ValueError(f"value nested deeper than {MAX_NESTING} levels")
    if kind is bytearray or kind is memoryview:
        return bytes(value)
    if kind is list or kind is tuple:
        return [normalize_value(item, _depth + 1) for item in value]
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) not in (str, int, bytes):
                kind_name = type(key).__name__
                raise TypeError(f"dict key {key!r} is a {kind_name}; use str, int or bytes")
            out[normalize_value(key, _depth + 1)] = normalize_value(item, _depth + 1)
        return out
    if isinstance(value, bool | int | float | str | bytes):  # subclasses (IntEnum, str enums)
        return normalize_value(_plain(value), _depth)
    raise TypeError(f"a {kind.__name__} cannot be replicated; use msgpack-able values")


def same_value(a: Any, b: Any) -> bool:
    """Value equality that also holds for NaN (NaN != NaN in Python): compares encodings."""
    return bool(a == b) or msgpack.packb(canonical(a)) == msgpack.packb(canonical(b))


def check_text(text: str) -> str:
    """`text` if it can be encoded as UTF-8 (msgpack's str); ValueError for lone surrogates."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"string {text!r:.40} is not valid Unicode: {exc.reason}") from None
    return text


def _plain(value: bool | int | float | str | bytes) -> bool | int | float | str | bytes:
    """The builtin value behind an enum or other subclass of a builtin scalar."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return bytes(value)


def normalize_key(key: Any) -> Hashable:
    """Return a set element or map key in its replicated form: str, bytes, int, None, or tuples
    of these (lists become tuples). bool and float are refused: 1, 1.0 and True are one Python
    key, and which of them a replica would read back would depend on the order of merges."""
    return _hashable(key, 0, strict=True)


def normalize_hashable(value: Any) -> Hashable:
    """Like normalize_key but also accepting bool and float (for multi-value register values)."""
    return _hashable(value, 0, strict=False)


def _hashable(key: Any, depth: int, strict: bool) -> Hashable:
    kind = type(key)
    if kind is str:
        return check_text(key)
    if key is None or kind is bytes:
        return key  # type: ignore[no-any-return]
    if kind is int:
        if not INT64_MIN <= key <= UINT64_MAX:
            raise ValueError(f"int {key} is outside the 64-bit range msgpack can carry")
        return key  # type: ignore[no-any-return]
    if kind is bool or kind is float:
        if strict:
            raise TypeError(
                f"{key!r} cannot be a key or set element: 1, 1.0 and True are one Python key; "
                "use str or int"
            )
        if kind is float and math.isnan(key):
            raise ValueError("NaN is not equal to itself and cannot be a set member")
        return key  # type: ignore[no-any-return]
    if depth >= MAX_NESTING:
        raise ValueError(f"key nested deeper than {MAX_NESTING} levels")
    if kind is tuple or kind is list:
        return tuple(_hashable(item, depth + 1, strict) for item in key)
    if kind is bytearray:
        return bytes(key)
    if isinstance(key, bool | int | float | str | bytes):
        return _hashable(_plain(key), depth, strict)
    raise TypeError(f"a {kind.__name__} cannot be a replicated key or set element")


def key_to_wire(key: Hashable) -> WireValue:
    """A normalized key as msgpack primitives (tuples become lists)."""
    if type(key) is tuple:
        return [key_to_wire(item) for item in key]
    return key


def key_from_wire(obj: WireValue, strict: bool = True) -> Hashable:
    """Inverse of key_to_wire; raise DecodeError for anything that is not a key."""
    try:
        return _hashable(obj, 0, strict)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"bad key or element: {exc}") from exc


def value_from_wire(obj: WireValue) -> Any:
    """A value decoded by msgpack, checked and normalized; DecodeError if it is not a value."""
    try:
        return normalize_value(obj)
    except (TypeError, ValueError, RecursionError) as exc:
        raise DecodeError(f"bad value: {exc}") from exc


# --- fingerprints -------------------------------------------------------------------------


def fingerprint_of(*parts: WireValue) -> bytes:
    """A stable 64-bit hash of wire values, whatever order their maps were built in."""
    packed = msgpack.packb([canonical(part) for part in parts], use_bin_type=True)
    return hashlib.blake2b(packed, digest_size=8).digest()


def canonical(value: WireValue) -> WireValue:
    """The same value with every map's keys in sorted order, recursively, so that equal values
    have equal msgpack encodings (maps stay maps: a list of pairs never collides with one)."""
    if isinstance(value, dict):
        try:
            items = sorted(value.items())
        except TypeError:  # keys of mixed types: order by type, then by repr
            items = sorted(value.items(), key=lambda kv: (type(kv[0]).__name__, repr(kv[0])))
        return {key: canonical(item) for key, item in items}
    if isinstance(value, list | tuple):
        return [canonical(item) for item in value]
    return value


# --- wire decoding helpers ---------------------------------------------------------------


def expect_header(obj: WireValue, tag: str, version: int, length: int) -> list[Any]:
    """Check `[tag, version, *fields]` of the given length and return it."""
    if not isinstance(obj, list | tuple):
        raise DecodeError(f"{tag}: expected a list, got {type(obj).__name__}")
    if len(obj) != length:
        raise DecodeError(f"{tag}: expected {length} fields, got {len(obj)}")
    if obj[0] != tag:
        raise DecodeError(f"expected a {tag!r} encoding, got tag {obj[0]!r}")
    if obj[1] != version or type(obj[1]) is not int:
        raise DecodeError(f"{tag}: unknown wire version {obj[1]!r} (this build reads {version})")
    return list(obj)


def expect_int(obj: WireValue, what: str, low: int = INT64_MIN, high: int = INT64_MAX) -> int:
    """An int within [low, high], or DecodeError."""
    if type(obj) is not int:
        raise DecodeError(f"{what}: expected an int, got {type(obj).__name__}")
    if not low <= obj <= high:
        raise DecodeError(f"{what}: {obj} is outside [{low}, {high}]")
    return obj


def expect_str(obj: WireValue, what: str) -> str:
    """A str, or DecodeError."""
    if type(obj) is not str:
        raise DecodeError(f"{what}: expected a str, got {type(obj).__name__}")
    return obj


def expect_list(obj: WireValue, what: str) -> list[Any]:
    """A list (or tuple, as msgpack may give), or DecodeError."""
    if not isinstance(obj, list | tuple):
        raise DecodeError(f"{what}: expected a list, got {type(obj).__name__}")
    return list(obj)


def expect_dict(obj: WireValue, what: str) -> Mapping[Any, Any]:
    """A dict, or DecodeError."""
    if not isinstance(obj, dict):
        raise DecodeError(f"{what}: expected a map, got {type(obj).__name__}")
    return obj


def expect_pairs(obj: WireValue, what: str) -> list[tuple[Any, Any]]:
    """A flat list [k1, v1, k2, v2, ...] as pairs, or DecodeError."""
    items = expect_list(obj, what)
    if len(items) % 2:
        raise DecodeError(f"{what}: expected an even number of items, got {len(items)}")
    return list(zip(items[0::2], items[1::2], strict=True))


def check_replica(replica: Any) -> str:
    """A replica id must be a non-empty str."""
    if type(replica) is not str or not replica:
        raise TypeError(f"replica id must be a non-empty str, got {replica!r}")
    return replica


def decoding(tag: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Turn stray errors of a decoder into DecodeError, so callers see one exception type."""

    def wrap(fn: Callable[P, T]) -> Callable[P, T]:
        def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return fn(*args, **kwargs)
            except DecodeError:
                raise
            except (TypeError, ValueError, LookupError, OverflowError, RecursionError) as exc:
                raise DecodeError(f"{tag}: {type(exc).__name__}: {exc}") from exc

        guarded.__name__ = fn.__name__
        guarded.__doc__ = fn.__doc__
        return guarded

    return wrap
