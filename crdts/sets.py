"""The add-wins observed-remove set."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

from crdts.base import (
    WireValue,
    check_replica,
    decoding,
    expect_header,
    expect_str,
    fingerprint_of,
    key_from_wire,
    key_to_wire,
    normalize_key,
)
from crdts.dots import (
    Dot,
    DotContext,
    context_for_delta,
    entries_from_wire,
    entries_to_wire,
    join_dots,
    split_entries,
)


class AWORSet:
    """A set where a remove takes out only the adds it has seen, so a concurrent add wins.

    Elements must be hashable once normalized: None, bool, int, float, str, bytes, or tuples.
    """

    TAG = "aworset"
    VERSION = 1

    __slots__ = ("_context", "_dots", "_elements", "replica")

    def __init__(self, replica: str) -> None:
        self.replica = check_replica(replica)
        self._dots: dict[Dot, Hashable] = {}
        self._elements: dict[Hashable, set[Dot]] = {}
        self._context = DotContext()

    @property
    def value(self) -> frozenset[Any]:
        """The elements."""
        return frozenset(self._elements)

    def __contains__(self, element: object) -> bool:
        try:
            return normalize_key(element) in self._elements
        except (TypeError, ValueError):
            return False

    def __iter__(self) -> Iterator[Any]:
        return iter(self._elements)

    def __len__(self) -> int:
        return len(self._elements)

    def add(self, element: Any) -> AWORSet:
        """Add `element` (replacing the adds of it seen so far) and return the delta."""
        element = normalize_key(element)
        dot = self._context.next_dot(self.replica)
        old = self._elements.get(element, set())
        delta = AWORSet(self.replica)
        delta._dots = {dot: element}
        delta._elements = {element: {dot}}
        delta._context = DotContext.of([*old, dot])
        for stale in old:
            del self._dots[stale]
        self._dots[dot] = element
        self._elements[element] = {dot}
        self._context.add(dot)
        return delta

    def remove(self, element: Any) -> AWORSet:
        """Remove `element` as seen here (a no-op delta if absent) and return the delta."""
        element = normalize_key(element)
        delta = AWORSet(self.replica)
        dots = self._elements.pop(element, None)
        if dots:
            delta._context = DotContext.of(dots)
            for dot in dots:
                del self._dots[dot]
        return delta

    def clear(self) -> AWORSet:
        """Remove every element seen here and return the delta."""
        delta = AWORSet(self.replica)
        delta._context = DotContext.of(self._dots)
        self._dots.clear()
        self._elements.clear()
        return delta

    def merge(self, other: AWORSet) -> None:
        """The dot-store join."""
        removed, added = join_dots(self._dots, self._context, other._dots, other._context)
        for dot in removed:
            self._drop(dot)
        for dot in added:
            element = other._dots[dot]
            self._dots[dot] = element
            self._elements.setdefault(element, set()).add(dot)
        self._context.update(other._context)

    def _drop(self, dot: Dot) -> None:
        element = self._dots.pop(dot)
        dots = self._elements[element]
        dots.discard(dot)
        if not dots:
            del self._elements[element]

    def copy(self) -> AWORSet:
        """An independent replica with the same state."""
        out = AWORSet(self.replica)
        out._dots = dict(self._dots)
        out._elements = {element: set(dots) for element, dots in self._elements.items()}
        out._context = self._context.copy()
        return out

    def digest(self) -> WireValue:
        """The causal context, as wire primitives."""
        return self._context.to_wire()

    def delta_since(self, digest: Any) -> AWORSet:
        """The adds `digest` has not seen, with the context that carries every remove."""
        seen = DotContext.from_wire(digest)
        delta = AWORSet(self.replica)
        for dot, element in self._dots.items():
            if dot not in seen:
                delta._dots[dot] = element
                delta._elements.setdefault(element, set()).add(dot)
        delta._context = context_for_delta(self._context, self._dots, seen)
        return delta

    def split(self, max_entries: int) -> list[AWORSet]:
        """This delta as pieces of at most `max_entries` adds, then one piece of removals.

        Each add piece carries only its own dots and the last piece only dots with no entry
        (seen removed), so the pieces are safe to merge in any order, or partly.
        """
        pieces = []
        for chunk in split_entries(self._dots, max_entries):
            piece = AWORSet(self.replica)
            piece._dots = chunk
            for dot, element in chunk.items():
                piece._elements.setdefault(element, set()).add(dot)
            piece._context = DotContext.of(chunk)
            pieces.append(piece)
        rest = AWORSet(self.replica)
        rest._context = self._context.without(self._dots)
        if rest._context or not pieces:
            pieces.append(rest)
        return pieces

    def fingerprint(self) -> bytes:
        """A hash of the state: the context and which of its dots are live (a remove changes
        only the latter)."""
        return fingerprint_of(self._context.to_wire(), DotContext.of(self._dots).to_wire())

    def to_wire(self) -> WireValue:
        """`["aworset", 1, replica, context, [replica, n, element, ...]]`."""
        flat = entries_to_wire(self._dots, key_to_wire)
        return [self.TAG, self.VERSION, self.replica, self._context.to_wire(), flat]

    @classmethod
    @decoding("aworset")
    def from_wire(cls, obj: WireValue) -> AWORSet:
        """Decode `to_wire` output; DecodeError on anything else."""
        _, _, replica, context, flat = expect_header(obj, cls.TAG, cls.VERSION, 5)
        out = cls(expect_str(replica, "aworset replica"))
        out._context = DotContext.from_wire(context)
        out._dots = entries_from_wire(flat, out._context, "aworset", key_from_wire)
        for dot, element in out._dots.items():
            out._elements.setdefault(element, set()).add(dot)
        return out

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, AWORSet)
            and self._dots == other._dots
            and self._context == other._context
        )

    def __repr__(self) -> str:
        return f"AWORSet({set(self._elements)!r})"
