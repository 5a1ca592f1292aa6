"""Registers: last-writer-wins (one value) and multi-value (every concurrent value)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import msgpack

from crdts.base import (
    DecodeError,
    WireValue,
    check_replica,
    decoding,
    expect_header,
    expect_list,
    expect_str,
    fingerprint_of,
    key_from_wire,
    key_to_wire,
    normalize_hashable,
    normalize_value,
    same_value,
    value_from_wire,
)
from crdts.dots import (
    Dot,
    DotContext,
    context_for_delta,
    entries_from_wire,
    entries_to_wire,
    join_dots,
)
from crdts.hlc import Timestamp


def lww_wins(
    ts: Timestamp, writer: str, value: Any, other_ts: Timestamp, other_writer: str, other_value: Any
) -> bool:
    """Whether write (ts, writer, value) beats the other: later timestamp, then higher writer id.

    Equal timestamps from the same writer only happen with a misused clock; the encoded value
    then decides, so every replica still picks the same winner.
    """
    if ts != other_ts:
        return ts > other_ts
    if writer != other_writer:
        return writer > other_writer
    return bool(msgpack.packb(value) > msgpack.packb(other_value))


class LWWRegister:
    """One value; the write with the highest timestamp wins, ties broken by replica id."""

    TAG = "lwwregister"
    VERSION = 1

    __slots__ = ("_ts", "_value", "_writer", "replica")

    def __init__(self, replica: str) -> None:
        self.replica = check_replica(replica)
        self._value: Any = None
        self._ts: Timestamp | None = None
        self._writer = ""

    @property
    def value(self) -> Any:
        """The winning value (None before any write)."""
        return self._value

    @property
    def timestamp(self) -> Timestamp | None:
        """The winning write's timestamp."""
        return self._ts

    def set(self, value: Any, ts: Timestamp) -> LWWRegister:
        """Write `value` at `ts` and return the delta (which loses if a later write is known)."""
        value = normalize_value(value)
        Timestamp.checked(ts)
        delta = LWWRegister(self.replica)
        delta._value, delta._ts, delta._writer = value, ts, self.replica
        self.merge(delta)
        return delta

    def merge(self, other: LWWRegister) -> None:
        """Keep the winning write."""
        if other._ts is None:
            return
        if self._ts is None or lww_wins(
            other._ts, other._writer, other._value, self._ts, self._writer, self._value
        ):
            self._value, self._ts, self._writer = other._value, other._ts, other._writer

    def copy(self) -> LWWRegister:
        """An independent replica with the same state (values are immutable once written)."""
        out = LWWRegister(self.replica)
        out._value, out._ts, out._writer = self._value, self._ts, self._writer
        return out

    def digest(self) -> WireValue:
        """`[timestamp, writer]` of the winning write, or None."""
        return None if self._ts is None else [self._ts.to_wire(), self._writer]

    def delta_since(self, digest: Any) -> LWWRegister:
        """This register if its write is not the one `digest` names, else an empty delta."""
        if digest is not None:
            pair = expect_list(digest, "lwwregister digest")
            if len(pair) != 2:
                raise DecodeError("lwwregister digest: expected [timestamp, writer]")
            ts = Timestamp.from_wire(pair[0])
            if (ts, pair[1]) == (self._ts, self._writer):
                return LWWRegister(self.replica)
        return self.copy()

    def split(self, max_entries: int) -> list[LWWRegister]:
        """A register is one entry: itself."""
        return [self.copy()]

    def fingerprint(self) -> bytes:
        """A hash of the state (here the digest determines the state)."""
        return fingerprint_of(self.digest())

    def to_wire(self) -> WireValue:
        """`["lwwregister", 1, replica, value, timestamp|None, writer]`."""
        ts = None if self._ts is None else self._ts.to_wire()
        return [self.TAG, self.VERSION, self.replica, self._value, ts, self._writer]

    @classmethod
    @decoding("lwwregister")
    def from_wire(cls, obj: WireValue) -> LWWRegister:
        """Decode `to_wire` output; DecodeError on anything else."""
        _, _, replica, value, ts, writer = expect_header(obj, cls.TAG, cls.VERSION, 6)
        out = cls(expect_str(replica, "lwwregister replica"))
        if ts is None:
            if value is not None or writer != "":
                raise DecodeError("lwwregister: a value without a timestamp")
            return out
        out._ts = Timestamp.from_wire(ts)
        out._writer = expect_str(writer, "lwwregister writer")
        out._value = value_from_wire(value)
        return out

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LWWRegister)
            and (self._ts, self._writer) == (other._ts, other._writer)
            and same_value(self._value, other._value)
        )

    def __repr__(self) -> str:
        return f"LWWRegister({self._value!r}, ts={self._ts})"


class MVRegister:
    """A register that keeps every concurrent write; a new write replaces all it has seen.

    Values must be hashable once normalized (scalars, bytes, tuples), since `value` is a frozenset.
    """

    TAG = "mvregister"
    VERSION = 1

    __slots__ = ("_context", "_entries", "replica")

    def __init__(self, replica: str) -> None:
        self.replica = check_replica(replica)
        self._entries: dict[Dot, Hashable] = {}
        self._context = DotContext()

    @property
    def value(self) -> frozenset[Any]:
        """The concurrent values (empty before any write)."""
        return frozenset(self._entries.values())

    def set(self, value: Any) -> MVRegister:
        """Write `value`, superseding every value seen so far; return the delta."""
        value = normalize_hashable(value)
        dot = self._context.next_dot(self.replica)
        delta = MVRegister(self.replica)
        delta._entries = {dot: value}
        delta._context = DotContext.of([*self._entries, dot])
        self._entries = {dot: value}
        self._context.add(dot)
        return delta

    def merge(self, other: MVRegister) -> None:
        """The dot-store join."""
        removed, added = join_dots(self._entries, self._context, other._entries, other._context)
        for dot in removed:
            del self._entries[dot]
        for dot in added:
            self._entries[dot] = other._entries[dot]
        self._context.update(other._context)

    def copy(self) -> MVRegister:
        """An independent replica with the same state."""
        out = MVRegister(self.replica)
        out._entries = dict(self._entries)
        out._context = self._context.copy()
        return out

    def digest(self) -> WireValue:
        """The causal context, as wire primitives."""
        return self._context.to_wire()

    def delta_since(self, digest: Any) -> MVRegister:
        """The writes `digest` has not seen, with the context that retires what they replace."""
        seen = DotContext.from_wire(digest)
        delta = MVRegister(self.replica)
        delta._entries = {dot: v for dot, v in self._entries.items() if dot not in seen}
        delta._context = context_for_delta(self._context, self._entries, seen)
        return delta

    def split(self, max_entries: int) -> list[MVRegister]:
        """A register holds few concurrent values: itself."""
        return [self.copy()]

    def fingerprint(self) -> bytes:
        """A hash of the state: the context and which of its dots are live (a remove changes
        only the latter)."""
        return fingerprint_of(self._context.to_wire(), DotContext.of(self._entries).to_wire())

    def to_wire(self) -> WireValue:
        """`["mvregister", 1, replica, context, [replica, n, value, ...]]`."""
        flat = entries_to_wire(self._entries, key_to_wire)
        return [self.TAG, self.VERSION, self.replica, self._context.to_wire(), flat]

    @classmethod
    @decoding("mvregister")
    def from_wire(cls, obj: WireValue) -> MVRegister:
        """Decode `to_wire` output; DecodeError on anything else."""
        _, _, replica, context, flat = expect_header(obj, cls.TAG, cls.VERSION, 5)
        out = cls(expect_str(replica, "mvregister replica"))
        out._context = DotContext.from_wire(context)
        out._entries = entries_from_wire(
            flat, out._context, "mvregister", lambda item: key_from_wire(item, strict=False)
        )
        return out

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, MVRegister)
            and self._entries == other._entries
            and self._context == other._context
        )

    def __repr__(self) -> str:
        return f"MVRegister({set(self.value)!r})"
