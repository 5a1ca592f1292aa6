"""Maps: an observed-remove map of nested CRDTs, and a last-writer-wins map with TTL."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar, cast

from crdts.base import (
    CRDT,
    INT64_MAX,
    DecodeError,
    WireValue,
    check_replica,
    decoding,
    expect_header,
    expect_int,
    expect_list,
    expect_str,
    fingerprint_of,
    key_from_wire,
    key_to_wire,
    normalize_key,
    normalize_value,
    same_value,
    value_from_wire,
)
from crdts.counters import GCounter, PNCounter
from crdts.dots import (
    Dot,
    DotContext,
    context_for_delta,
    dot_from_wire,
    entries_from_wire,
    entries_to_wire,
    join_dots,
    split_entries,
)
from crdts.hlc import Timestamp
from crdts.registers import LWWRegister, MVRegister, lww_wins
from crdts.sets import AWORSet

V = TypeVar("V", bound=CRDT)


class ORMap(Generic[V]):
    """A map from keys to nested CRDTs; a remove resets what it has seen, a concurrent update wins.

    Each update files the key's whole nested value under a fresh dot, replacing the dots it saw;
    the key's value is the merge of its live dots. So a remove followed by a new update starts
    from an empty value, while an update concurrent with a remove survives with what it wrote.
    """

    TAG = "ormap"
    VERSION = 1
    value_types: ClassVar[dict[str, type[Any]]] = {}

    __slots__ = ("_context", "_dots", "_keys", "_lineage", "_views", "replica", "value_type")

    def __init__(self, replica: str, value_type: type[V]) -> None:
        self.replica = check_replica(replica)
        if getattr(value_type, "TAG", None) not in self.value_types:
            raise TypeError(
                f"value_type must be a registered CRDT class ({', '.join(self.value_types)}), "
                f"got {value_type!r}"
            )
        self.value_type = value_type
        self._dots: dict[Dot, tuple[Hashable, V]] = {}
        self._keys: dict[Hashable, set[Dot]] = {}
        self._context = DotContext()
        self._views: dict[Hashable, V] = {}
        # local, not replicated: per key, the nested replica id we write under and our last write
        self._lineage: dict[Hashable, tuple[str, V]] = {}

    @classmethod
    def register_value_type(cls, value_type: type[Any]) -> type[Any]:
        """Allow a CRDT class (with TAG, `__init__(replica)`, wire methods) as a value type."""
        cls.value_types[value_type.TAG] = value_type
        return value_type

    @property
    def value(self) -> dict[Any, Any]:
        """Each key's nested value, read plainly."""
        return {key: self.get(key).value for key in self._keys}  # type: ignore[union-attr]

    def __contains__(self, key: object) -> bool:
        try:
            return normalize_key(key) in self._keys
        except (TypeError, ValueError):
            return False

    def __iter__(self) -> Iterator[Any]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key: Any) -> V | None:
        """A read-only view of the nested value at `key` (None if absent); mutate via update()."""
        key = normalize_key(key)
        if key not in self._keys:
            return None
        view = self._views.get(key)
        if view is None:
            view = self._new_value()
            for dot in self._keys[key]:
                view.merge(self._dots[dot][1])
            self._views[key] = view
        return view

    def _new_value(self, replica: str | None = None) -> V:
        return cast(Callable[..., V], self.value_type)(replica=replica or self.replica)

    def _continuing_lineage(self, key: Hashable, current: V | None) -> str:
        """The nested replica id this replica writes `key` under.

        It stays the same while the key's value still holds everything we last wrote; if a
        remove took some of it away, a fresh id starts, so no nested dot or counter slot is
        ever issued twice with different content.
        """
        known = self._lineage.get(key)
        if current is not None and known is not None:
            lineage, last_written = known
            probe = current.copy()
            probe.merge(last_written)
            if probe == current:
                return lineage
        return f"{self.replica}.{self._context.max(self.replica) + 1}"

    def update(self, key: Any, mutate: Callable[[V], object]) -> ORMap[V]:
        """Apply `mutate` to the nested value at `key` (created empty if absent); return the delta.

        If `mutate` raises, nothing changes.
        """
        key = normalize_key(key)
        current = self.get(key)
        lineage = self._continuing_lineage(key, current)
        nested = self._new_value(lineage)
        if current is not None:
            nested.merge(current)
        mutate(nested)
        self._lineage[key] = (lineage, nested.copy())
        dot = self._context.next_dot(self.replica)
        old = self._keys.get(key, set())
        delta = ORMap(self.replica, self.value_type)
        delta._dots = {dot: (key, nested)}
        delta._keys = {key: {dot}}
        delta._context = DotContext.of([*old, dot])
        for stale in old:
            del self._dots[stale]
        self._dots[dot] = (key, nested.copy())
        self._keys[key] = {dot}
        self._views[key] = nested
        self._context.add(dot)
        return delta

    def remove(self, key: Any) -> ORMap[V]:
        """Remove `key` as seen here (a no-op delta if absent) and return the delta."""
        key = normalize_key(key)
        delta = ORMap(self.replica, self.value_type)
        dots = self._keys.pop(key, None)
        self._views.pop(key, None)
        self._lineage.pop(key, None)
        if dots:
            delta._context = DotContext.of(dots)
            for dot in dots:
                del self._dots[dot]
        return delta

    def merge(self, other: ORMap[V]) -> None:
        """The dot-store join; nested values under the same dot are identical by construction."""
        if other.value_type is not self.value_type:
            raise TypeError(
                f"cannot merge an ORMap of {other.value_type.__name__} "
                f"into one of {self.value_type.__name__}"
            )
        removed, added = join_dots(self._dots, self._context, other._dots, other._context)
        for dot in removed:
            key = self._dots.pop(dot)[0]
            self._views.pop(key, None)
            dots = self._keys[key]
            dots.discard(dot)
            if not dots:
                del self._keys[key]
        for dot in added:
            key, nested = other._dots[dot]
            self._dots[dot] = (key, nested.copy())
            self._keys.setdefault(key, set()).add(dot)
            self._views.pop(key, None)
        self._context.update(other._context)

    def copy(self) -> ORMap[V]:
        """An independent replica with the same state."""
        out = ORMap(self.replica, self.value_type)
        out._dots = {dot: (key, nested.copy()) for dot, (key, nested) in self._dots.items()}
        out._keys = {key: set(dots) for key, dots in self._keys.items()}
        out._context = self._context.copy()
        return out

    def digest(self) -> WireValue:
        """The causal context, as wire primitives."""
        return self._context.to_wire()

    def delta_since(self, digest: Any) -> ORMap[V]:
        """The updates `digest` has not seen, with the context that carries every remove."""
        seen = DotContext.from_wire(digest)
        delta = ORMap(self.replica, self.value_type)
        for dot, (key, nested) in self._dots.items():
            if dot not in seen:
                delta._dots[dot] = (key, nested.copy())
                delta._keys.setdefault(key, set()).add(dot)
        delta._context = context_for_delta(self._context, self._dots, seen)
        return delta

    def split(self, max_entries: int) -> list[ORMap[V]]:
        """This delta as pieces of at most `max_entries` updates, then one piece of removals
        (each safe to merge alone, in any order; see AWORSet.split)."""
        pieces = []
        for chunk in split_entries(self._dots, max_entries):
            piece = ORMap(self.replica, self.value_type)
            piece._dots = chunk
            for dot, (key, _) in chunk.items():
                piece._keys.setdefault(key, set()).add(dot)
            piece._context = DotContext.of(chunk)
            pieces.append(piece)
        rest = ORMap(self.replica, self.value_type)
        rest._context = self._context.without(self._dots)
        if rest._context or not pieces:
            pieces.append(rest)
        return pieces

    def fingerprint(self) -> bytes:
        """A hash of the state: the context and which of its dots are live (a remove changes
        only the latter)."""
        return fingerprint_of(self._context.to_wire(), DotContext.of(self._dots).to_wire())

    def to_wire(self) -> WireValue:
        """`["ormap", 1, replica, value_tag, context, [replica, n, [key, nested], ...]]`."""
        flat = entries_to_wire(self._dots, lambda item: [key_to_wire(item[0]), item[1].to_wire()])
        return [
            self.TAG,
            self.VERSION,
            self.replica,
            self.value_type.TAG,  # type: ignore[attr-defined]
            self._context.to_wire(),
            flat,
        ]

    @classmethod
    @decoding("ormap")
    def from_wire(cls, obj: WireValue) -> ORMap[Any]:
        """Decode `to_wire` output; DecodeError on anything else."""
        _, _, replica, tag, context, flat = expect_header(obj, cls.TAG, cls.VERSION, 6)
        value_type = cls.value_types.get(tag) if isinstance(tag, str) else None
        if value_type is None:
            raise DecodeError(f"ormap: unknown value type {tag!r}")
        out: ORMap[Any] = cls(expect_str(replica, "ormap replica"), value_type)
        out._context = DotContext.from_wire(context)

        def decode(item: WireValue) -> tuple[Hashable, Any]:
            pair = expect_list(item, "ormap entry")
            if len(pair) != 2:
                raise DecodeError("ormap entry: expected [key, nested value]")
            return key_from_wire(pair[0]), value_type.from_wire(pair[1])

        out._dots = entries_from_wire(flat, out._context, "ormap", decode)
        for dot, (key, _) in out._dots.items():
            out._keys.setdefault(key, set()).add(dot)
        return out

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ORMap)
            and self.value_type is other.value_type
            and self._dots == other._dots
            and self._context == other._context
        )

    def __repr__(self) -> str:
        return f"ORMap[{self.value_type.__name__}]({self.value!r})"


class LWWEntry(NamedTuple):
    """One write to a key of an LWWMap: a value or a tombstone, with its timestamp and dot."""

    value: Any
    ts: Timestamp
    writer: str
    dot: Dot
    expires_ms: int | None = None
    deleted: bool = False

    def beats(self, other: LWWEntry) -> bool:
        """Whether this write wins over `other` (later timestamp, then higher writer id; a tie
        of both, from a misused clock, is decided by the whole encoded write)."""
        return lww_wins(
            self.ts,
            self.writer,
            [self.deleted, self.value, self.expires_ms, list(self.dot)],
            other.ts,
            other.writer,
            [other.deleted, other.value, other.expires_ms, list(other.dot)],
        )

    def same(self, other: LWWEntry) -> bool:
        """Equality that holds for a NaN value too (NaN != NaN in Python)."""
        return self == other or (
            self.ts == other.ts
            and self.dot == other.dot
            and self.writer == other.writer
            and same_value(self.value, other.value)
            and (self.expires_ms, self.deleted) == (other.expires_ms, other.deleted)
        )

    def expired(self, now_ms: int) -> bool:
        """Whether the entry's TTL has run out at `now_ms`."""
        return self.expires_ms is not None and now_ms >= self.expires_ms


class LWWMap:
    """A map where each key holds its latest write; deletes are timestamped tombstones.

    Every write also carries a dot, so the causal context (the dots seen) is an exact digest
    even when writes arrive out of order.
    """

    TAG = "lwwmap"
    VERSION = 1

    __slots__ = ("_context", "_entries", "replica")

    def __init__(self, replica: str) -> None:
        self.replica = check_replica(replica)
        self._entries: dict[Hashable, LWWEntry] = {}
        self._context = DotContext()

    @property
    def value(self) -> dict[Any, Any]:
        """Every key that is not deleted, ignoring TTLs (see value_at)."""
        return {key: e.value for key, e in self._entries.items() if not e.deleted}

    def value_at(self, now_ms: int) -> dict[Any, Any]:
        """Every key that is neither deleted nor expired at `now_ms`."""
        return {
            key: e.value
            for key, e in self._entries.items()
            if not e.deleted and not e.expired(now_ms)
        }

    def get(self, key: Any, default: Any = None, now_ms: int | None = None) -> Any:
        """The value at `key`; `default` if absent, deleted, or expired at `now_ms` (when given)."""
        entry = self._entries.get(normalize_key(key))
        if entry is None or entry.deleted or (now_ms is not None and entry.expired(now_ms)):
            return default
        return entry.value

    def entry(self, key: Any) -> LWWEntry | None:
        """The winning write at `key`, tombstones included."""
        return self._entries.get(normalize_key(key))

    def entries(self) -> Iterator[tuple[Any, LWWEntry]]:
        """Every (key, winning write), tombstones included."""
        return iter(self._entries.items())

    def __contains__(self, key: object) -> bool:
        try:
            entry = self._entries.get(normalize_key(key))
        except (TypeError, ValueError):
            return False
        return entry is not None and not entry.deleted

    def __len__(self) -> int:
        return sum(1 for e in self._entries.values() if not e.deleted)

    def __iter__(self) -> Iterator[Any]:
        return (key for key, e in self._entries.items() if not e.deleted)

    def set(self, key: Any, value: Any, ts: Timestamp, ttl_ms: int | None = None) -> LWWMap:
        """Write `value` at `key` with timestamp `ts` (optionally expiring `ttl_ms` after `ts`)."""
        key = normalize_key(key)
        value = normalize_value(value)
        Timestamp.checked(ts)
        expires = None
        if ttl_ms is not None:
            if type(ttl_ms) is not int or ttl_ms <= 0:
                raise ValueError(f"ttl_ms must be a positive int, got {ttl_ms!r}")
            expires = min(ts.wall_ms + ttl_ms, INT64_MAX)
        return self._write(key, value, ts, expires, deleted=False)

    def delete(self, key: Any, ts: Timestamp) -> LWWMap:
        """Delete `key` with a tombstone at `ts` and return the delta."""
        key = normalize_key(key)
        Timestamp.checked(ts)
        return self._write(key, None, ts, None, deleted=True)

    def _write(
        self, key: Hashable, value: Any, ts: Timestamp, expires: int | None, deleted: bool
    ) -> LWWMap:
        dot = self._context.next_dot(self.replica)
        entry = LWWEntry(value, ts, self.replica, dot, expires, deleted)
        delta = LWWMap(self.replica)
        delta._entries[key] = entry
        delta._context.add(dot)
        self._apply(key, entry)
        self._context.add(dot)
        return delta

    def _apply(self, key: Hashable, entry: LWWEntry) -> None:
        current = self._entries.get(key)
        if current is None or entry.beats(current):
            self._entries[key] = entry

    def merge(self, other: LWWMap) -> None:
        """Keep the winning write per key; union the contexts."""
        mine = self._entries
        for key, entry in other._entries.items():
            current = mine.get(key)
            if current is None or (current.dot != entry.dot and entry.beats(current)):
                mine[key] = entry
        self._context.update(other._context)

    def compact(self, stable_before_ms: int, expired_before_ms: int | None = None) -> int:
        """Drop tombstones older than `stable_before_ms` and entries expired by
        `expired_before_ms` (default: the same time); return how many. Local: not replicated.

        Tombstones: call it only with a time before which every write has reached every
        replica (causal stability), or an older write still in flight brings its key back.
        Expired entries may go at any time after they expire: one brought back is still
        expired, and the causal context keeps anti-entropy from sending it again.
        """
        expired_by = stable_before_ms if expired_before_ms is None else expired_before_ms
        doomed = [
            key
            for key, e in self._entries.items()
            if (e.deleted and e.ts.wall_ms < stable_before_ms)
            or (e.expires_ms is not None and e.expires_ms <= expired_by)
        ]
        for key in doomed:
            del self._entries[key]
        return len(doomed)

    def copy(self) -> LWWMap:
        """An independent replica with the same state."""
        out = LWWMap(self.replica)
        out._entries = dict(self._entries)
        out._context = self._context.copy()
        return out

    def digest(self) -> WireValue:
        """The causal context (the dots of every write seen), as wire primitives."""
        return self._context.to_wire()

    def delta_since(self, digest: Any) -> LWWMap:
        """The winning writes `digest` has not seen, with the dots they supersede."""
        seen = DotContext.from_wire(digest)
        delta = LWWMap(self.replica)
        delta._entries = {k: e for k, e in self._entries.items() if e.dot not in seen}
        live = (e.dot for e in self._entries.values())
        delta._context = context_for_delta(self._context, live, seen)
        return delta

    def split(self, max_entries: int) -> list[LWWMap]:
        """This delta as pieces of at most `max_entries` writes, then one piece with the
        superseded dots (each safe to merge alone, in any order)."""
        pieces = []
        items = list(self._entries.items())
        for start in range(0, len(items), max_entries):
            piece = LWWMap(self.replica)
            piece._entries = dict(items[start : start + max_entries])
            piece._context = DotContext.of(e.dot for e in piece._entries.values())
            pieces.append(piece)
        rest = LWWMap(self.replica)
        rest._context = self._context.without(e.dot for e in self._entries.values())
        if rest._context or not pieces:
            pieces.append(rest)
        return pieces

    def fingerprint(self) -> bytes:
        """A hash of the state: the context and which of its dots are live (a remove changes
        only the latter)."""
        return fingerprint_of(
            self._context.to_wire(), DotContext.of(e.dot for e in self._entries.values()).to_wire()
        )

    def to_wire(self) -> WireValue:
        """`["lwwmap", 1, replica, context, [key, value, ts, writer, r, n, expires, deleted]*]`."""
        flat: list[Any] = []
        for key, e in self._entries.items():
            flat.extend(
                (
                    key_to_wire(key),
                    e.value,
                    e.ts.to_wire(),
                    e.writer,
                    *e.dot,
                    e.expires_ms,
                    e.deleted,
                )
            )
        return [self.TAG, self.VERSION, self.replica, self._context.to_wire(), flat]

    @classmethod
    @decoding("lwwmap")
    def from_wire(cls, obj: WireValue) -> LWWMap:
        """Decode `to_wire` output; DecodeError on anything else."""
        _, _, replica, context, flat = expect_header(obj, cls.TAG, cls.VERSION, 5)
        out = cls(expect_str(replica, "lwwmap replica"))
        out._context = DotContext.from_wire(context)
        items = expect_list(flat, "lwwmap entries")
        if len(items) % 8:
            raise DecodeError("lwwmap entries: expected groups of 8 fields")
        dots: set[Dot] = set()
        for i in range(0, len(items), 8):
            key, value, ts, writer, r, n, expires, deleted = items[i : i + 8]
            key = key_from_wire(key)
            dot = dot_from_wire(r, n)
            if key in out._entries or dot in dots:
                raise DecodeError(f"lwwmap: key {key!r} or dot {dot} appears twice")
            if dot not in out._context:
                raise DecodeError(f"lwwmap: dot {dot} is not covered by the causal context")
            if type(deleted) is not bool:
                raise DecodeError("lwwmap: deleted flag must be a bool")
            if expires is not None:
                expect_int(expires, "lwwmap expires_ms", 0, INT64_MAX)
            if deleted and (value is not None or expires is not None):
                raise DecodeError("lwwmap: a tombstone carries a value or TTL")
            dots.add(dot)
            out._entries[key] = LWWEntry(
                value_from_wire(value),
                Timestamp.from_wire(ts),
                expect_str(writer, "lwwmap writer"),
                dot,
                expires,
                deleted,
            )
        return out

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LWWMap)
            and self._entries.keys() == other._entries.keys()
            and all(e.same(other._entries[k]) for k, e in self._entries.items())
            and self._context == other._context
        )

    def __repr__(self) -> str:
        return f"LWWMap({self.value!r})"


for _value_type in (GCounter, PNCounter, LWWRegister, MVRegister, AWORSet, LWWMap):
    ORMap.register_value_type(_value_type)
