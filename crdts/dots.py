"""Dots and causal contexts: the bookkeeping behind add-wins sets, multi-value registers and maps.

A dot `(replica, n)` names the n-th event of a replica. A causal context is the set of dots a
replica has seen, kept per replica as sorted half-open intervals `[lo, hi)`, so contiguous
history costs two ints however long it is and there are no unbounded tombstone sets.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from crdts.base import INT64_MAX, DecodeError, WireValue, expect_dict, expect_int, expect_str

Dot = tuple[str, int]
P = TypeVar("P")


class DotContext:
    """A set of dots, compressed into intervals per replica."""

    __slots__ = ("_ranges",)

    def __init__(self) -> None:
        self._ranges: dict[str, list[int]] = {}

    # --- queries -------------------------------------------------------------------------

    def __contains__(self, dot: Dot) -> bool:
        bounds = self._ranges.get(dot[0])
        if not bounds:
            return False
        return bisect_right(bounds, dot[1]) % 2 == 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DotContext) and self._ranges == other._ranges

    def __repr__(self) -> str:
        return f"DotContext({self._ranges!r})"

    def __bool__(self) -> bool:
        return bool(self._ranges)

    def max(self, replica: str) -> int:
        """The highest event number seen from `replica` (0 if none)."""
        bounds = self._ranges.get(replica)
        return bounds[-1] - 1 if bounds else 0

    def next_dot(self, replica: str) -> Dot:
        """A fresh dot for a new event of `replica`."""
        counter = self.max(replica) + 1
        if counter > INT64_MAX - 1:
            raise OverflowError(f"replica {replica!r} has exhausted its event counter")
        return (replica, counter)

    def size(self) -> int:
        """How many dots the context holds."""
        total = 0
        for bounds in self._ranges.values():
            total += sum(bounds[1::2]) - sum(bounds[0::2])
        return total

    def dots(self) -> Iterator[Dot]:
        """Every dot, in order (beware: may be many)."""
        for replica, bounds in self._ranges.items():
            for lo, hi in zip(bounds[0::2], bounds[1::2], strict=True):
                for counter in range(lo, hi):
                    yield (replica, counter)

    def covers(self, other: DotContext) -> bool:
        """Whether every dot of `other` is in this context."""
        for replica, bounds in other._ranges.items():
            mine = self._ranges.get(replica)
            if not mine:
                return False
            for lo, hi in zip(bounds[0::2], bounds[1::2], strict=True):
                i = bisect_right(mine, lo)
                if i % 2 == 0 or mine[i] < hi:
                    return False
        return True

    # --- updates -------------------------------------------------------------------------

    def add(self, dot: Dot) -> None:
        """Add one dot."""
        replica, counter = dot
        bounds = self._ranges.get(replica)
        if bounds is None:
            self._ranges[replica] = [counter, counter + 1]
            return
        if bounds[-1] == counter:  # the common case: the next event of that replica
            bounds[-1] = counter + 1
            return
        self._ranges[replica] = _union(bounds, [counter, counter + 1])

    def update(self, other: DotContext) -> None:
        """Union `other` into this context."""
        for replica, bounds in other._ranges.items():
            mine = self._ranges.get(replica)
            self._ranges[replica] = list(bounds) if mine is None else _union(mine, bounds)

    def without(self, dots: Iterable[Dot]) -> DotContext:
        """A new context with the given dots taken out."""
        by_replica: dict[str, list[int]] = {}
        for replica, counter in dots:
            by_replica.setdefault(replica, []).append(counter)
        out = DotContext()
        for replica, bounds in self._ranges.items():
            points = by_replica.get(replica)
            result = _subtract_points(bounds, sorted(points)) if points else list(bounds)
            if result:
                out._ranges[replica] = result
        return out

    def copy(self) -> DotContext:
        """An independent copy."""
        out = DotContext()
        out._ranges = {replica: list(bounds) for replica, bounds in self._ranges.items()}
        return out

    @classmethod
    def of(cls, dots: Iterable[Dot]) -> DotContext:
        """The context holding exactly `dots`."""
        out = cls()
        for dot in sorted(dots):
            out.add(dot)
        return out

    # --- wire ----------------------------------------------------------------------------

    def to_wire(self) -> WireValue:
        """`{replica: [lo1, hi1, lo2, hi2, ...]}` with half-open, sorted, disjoint intervals."""
        return {replica: list(bounds) for replica, bounds in self._ranges.items()}

    @classmethod
    def from_wire(cls, obj: WireValue) -> DotContext:
        """Decode `to_wire` output, checking every interval; DecodeError on anything else."""
        out = cls()
        for replica, bounds in expect_dict(obj, "causal context").items():
            expect_str(replica, "causal context replica")
            if not isinstance(bounds, list | tuple) or not bounds or len(bounds) % 2:
                raise DecodeError(f"causal context of {replica!r}: expected [lo, hi, ...] pairs")
            previous = 0
            for bound in bounds:
                expect_int(bound, "causal context bound", 1, INT64_MAX)
                # strictly increasing, so intervals never touch and the form is canonical
                if bound <= previous:
                    raise DecodeError(f"causal context of {replica!r}: intervals not canonical")
                previous = bound
            out._ranges[replica] = list(bounds)
        return out


def _union(a: list[int], b: list[int]) -> list[int]:
    intervals = sorted(zip(a[0::2] + b[0::2], a[1::2] + b[1::2], strict=True))
    out: list[int] = []
    for lo, hi in intervals:
        if out and lo <= out[-1]:
            if hi > out[-1]:
                out[-1] = hi
        else:
            out.extend((lo, hi))
    return out


def _subtract_points(bounds: list[int], points: list[int]) -> list[int]:
    out: list[int] = []
    p = 0
    for lo, hi in zip(bounds[0::2], bounds[1::2], strict=True):
        while p < len(points) and points[p] < lo:
            p += 1
        start = lo
        while p < len(points) and points[p] < hi:
            if points[p] > start:
                out.extend((start, points[p]))
            start = max(start, points[p] + 1)
            p += 1
        if start < hi:
            out.extend((start, hi))
    return out


def dots_to_wire(dots: Iterable[Dot]) -> list[Any]:
    """Dots as a flat list [replica, n, replica, n, ...]."""
    out: list[Any] = []
    for replica, counter in dots:
        out.extend((replica, counter))
    return out


def dot_from_wire(replica: Any, counter: Any) -> Dot:
    """Decode one dot; DecodeError if it is not `(str, positive int)`."""
    return (expect_str(replica, "dot replica"), expect_int(counter, "dot counter", 1, INT64_MAX))


def join_dots(
    mine: Mapping[Dot, P],
    my_context: DotContext,
    theirs: Mapping[Dot, P],
    their_context: DotContext,
) -> tuple[list[Dot], list[Dot]]:
    """The dot-store join: which of my dots the other side removed, and which of theirs I lack.

    A dot I hold dies if the other side has seen it (their context) and no longer holds it;
    a dot they hold is new to me if I have never seen it (my context).
    """
    if their_context.size() < len(mine):
        candidates: Iterable[Dot] = (dot for dot in their_context.dots() if dot in mine)
    else:
        candidates = mine
    removed = [dot for dot in candidates if dot not in theirs and dot in their_context]
    added = [dot for dot in theirs if dot not in mine and dot not in my_context]
    return removed, added


def context_for_delta(context: DotContext, live: Iterable[Dot], digest: DotContext) -> DotContext:
    """The context a delta_since(digest) must carry: everything I saw, minus my live dots the
    other side already has (so that their copies of those are not mistaken for removals)."""
    return context.without(dot for dot in live if dot in digest)


def entries_to_wire(entries: Mapping[Dot, P], encode: Callable[[P], WireValue]) -> list[Any]:
    """A dot store as a flat list [replica, n, payload, ...]."""
    flat: list[Any] = []
    for (replica, counter), payload in entries.items():
        flat.extend((replica, counter, encode(payload)))
    return flat


def entries_from_wire(
    flat: WireValue, context: DotContext, what: str, decode: Callable[[WireValue], P]
) -> dict[Dot, P]:
    """Decode entries_to_wire output, each dot unique and covered by `context`."""
    if not isinstance(flat, list | tuple) or len(flat) % 3:
        raise DecodeError(f"{what} entries: expected a flat list of [replica, n, payload] triples")
    entries: dict[Dot, P] = {}
    for i in range(0, len(flat), 3):
        dot = dot_from_wire(flat[i], flat[i + 1])
        if dot in entries:
            raise DecodeError(f"{what}: dot {dot} appears twice")
        if dot not in context:
            raise DecodeError(f"{what}: dot {dot} is not covered by the causal context")
        entries[dot] = decode(flat[i + 2])
    return entries


def split_entries(entries: Mapping[Dot, P], max_entries: int) -> list[dict[Dot, P]]:
    """A dot store's entries in chunks of at most `max_entries`."""
    if max_entries < 1:
        raise ValueError(f"max_entries must be >= 1, got {max_entries}")
    items = list(entries.items())
    return [dict(items[i : i + max_entries]) for i in range(0, len(items), max_entries)]
