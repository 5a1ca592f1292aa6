"""Grow-only and positive-negative counters."""

from __future__ import annotations

from typing import Any

from crdts.base import (
    INT64_MAX,
    DecodeError,
    WireValue,
    check_replica,
    decoding,
    expect_dict,
    expect_header,
    expect_int,
    expect_str,
    fingerprint_of,
)


class GCounter:
    """A counter that only grows: one monotonic total per replica, merged by max."""

    TAG = "gcounter"
    VERSION = 1

    __slots__ = ("_totals", "replica")

    def __init__(self, replica: str) -> None:
        self.replica = check_replica(replica)
        self._totals: dict[str, int] = {}

    @property
    def value(self) -> int:
        """The sum over all replicas."""
        return sum(self._totals.values())

    def increment(self, amount: int = 1) -> GCounter:
        """Add `amount` (>= 0) and return the delta."""
        if type(amount) is not int:
            raise TypeError(f"amount must be an int, got {type(amount).__name__}")
        if amount < 0:
            raise ValueError(f"a GCounter only grows; got {amount}")
        delta = GCounter(self.replica)
        if amount == 0:
            return delta
        total = self._totals.get(self.replica, 0) + amount
        if total > INT64_MAX:
            raise ValueError(f"replica {self.replica!r} total would exceed 2**63 - 1")
        self._totals[self.replica] = total
        delta._totals[self.replica] = total
        return delta

    def merge(self, other: GCounter) -> None:
        """Join by per-replica maximum."""
        totals = self._totals
        for replica, total in other._totals.items():
            if total > totals.get(replica, 0):
                totals[replica] = total

    def copy(self) -> GCounter:
        """An independent replica with the same state."""
        out = GCounter(self.replica)
        out._totals = dict(self._totals)
        return out

    def digest(self) -> dict[str, int]:
        """The per-replica totals: a version vector."""
        return dict(self._totals)

    def delta_since(self, digest: Any) -> GCounter:
        """The totals that are ahead of `digest`."""
        theirs = _totals_from_wire(digest, "gcounter digest")
        delta = GCounter(self.replica)
        delta._totals = {r: t for r, t in self._totals.items() if t > theirs.get(r, 0)}
        return delta

    def split(self, max_entries: int) -> list[GCounter]:
        """This delta as pieces of at most `max_entries` totals each; merging all is the same."""
        items = list(self._totals.items())
        pieces = []
        for start in range(0, len(items), max_entries):
            piece = GCounter(self.replica)
            piece._totals = dict(items[start : start + max_entries])
            pieces.append(piece)
        return pieces or [self.copy()]

    def fingerprint(self) -> bytes:
        """A hash of the state (here the digest determines the state)."""
        return fingerprint_of(self.digest())

    def to_wire(self) -> WireValue:
        """`["gcounter", 1, replica, {replica: total}]`."""
        return [self.TAG, self.VERSION, self.replica, dict(self._totals)]

    @classmethod
    @decoding("gcounter")
    def from_wire(cls, obj: WireValue) -> GCounter:
        """Decode `to_wire` output; DecodeError on anything else."""
        _, _, replica, totals = expect_header(obj, cls.TAG, cls.VERSION, 4)
        out = cls(expect_str(replica, "gcounter replica"))
        out._totals = _totals_from_wire(totals, "gcounter totals")
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GCounter) and self._totals == other._totals

    def __repr__(self) -> str:
        return f"GCounter(value={self.value}, totals={self._totals!r})"


def _totals_from_wire(obj: WireValue, what: str) -> dict[str, int]:
    out = {}
    for replica, total in expect_dict(obj, what).items():
        expect_str(replica, f"{what} replica")
        if expect_int(total, f"{what} total", 0, INT64_MAX) > 0:
            out[replica] = total
    return out


class PNCounter:
    """A counter that goes up and down: two grow-only counters, increments minus decrements."""

    TAG = "pncounter"
    VERSION = 1

    __slots__ = ("_n", "_p", "replica")

    def __init__(self, replica: str) -> None:
        self.replica = check_replica(replica)
        self._p = GCounter(replica)
        self._n = GCounter(replica)

    @property
    def value(self) -> int:
        """Increments minus decrements."""
        return self._p.value - self._n.value

    def increment(self, amount: int = 1) -> PNCounter:
        """Add `amount` (a negative amount decrements) and return the delta."""
        if type(amount) is not int:
            raise TypeError(f"amount must be an int, got {type(amount).__name__}")
        if amount < 0:
            return self.decrement(-amount)
        return self._delta(p=self._p.increment(amount))

    def decrement(self, amount: int = 1) -> PNCounter:
        """Subtract `amount` (>= 0) and return the delta."""
        if type(amount) is not int:
            raise TypeError(f"amount must be an int, got {type(amount).__name__}")
        if amount < 0:
            return self.increment(-amount)
        return self._delta(n=self._n.increment(amount))

    def _delta(self, p: GCounter | None = None, n: GCounter | None = None) -> PNCounter:
        delta = PNCounter(self.replica)
        if p is not None:
            delta._p = p
        if n is not None:
            delta._n = n
        return delta

    def merge(self, other: PNCounter) -> None:
        """Join both halves."""
        self._p.merge(other._p)
        self._n.merge(other._n)

    def copy(self) -> PNCounter:
        """An independent replica with the same state."""
        return self._delta(p=self._p.copy(), n=self._n.copy())

    def digest(self) -> list[dict[str, int]]:
        """`[increments vector, decrements vector]`."""
        return [self._p.digest(), self._n.digest()]

    def delta_since(self, digest: Any) -> PNCounter:
        """The totals that are ahead of `digest`, on either half."""
        if not isinstance(digest, list | tuple) or len(digest) != 2:
            raise DecodeError("pncounter digest: expected [increments, decrements]")
        return self._delta(p=self._p.delta_since(digest[0]), n=self._n.delta_since(digest[1]))

    def split(self, max_entries: int) -> list[PNCounter]:
        """This delta as pieces of at most `max_entries` totals per half."""
        ps, ns = self._p.split(max_entries), self._n.split(max_entries)
        return [self._delta(p=p) for p in ps] + [self._delta(n=n) for n in ns]

    def fingerprint(self) -> bytes:
        """A hash of the state (here the digest determines the state)."""
        return fingerprint_of(self.digest())

    def to_wire(self) -> WireValue:
        """`["pncounter", 1, replica, {increments}, {decrements}]`."""
        return [self.TAG, self.VERSION, self.replica, dict(self._p._totals), dict(self._n._totals)]

    @classmethod
    @decoding("pncounter")
    def from_wire(cls, obj: WireValue) -> PNCounter:
        """Decode `to_wire` output; DecodeError on anything else."""
        _, _, replica, p, n = expect_header(obj, cls.TAG, cls.VERSION, 5)
        out = cls(expect_str(replica, "pncounter replica"))
        out._p._totals = _totals_from_wire(p, "pncounter increments")
        out._n._totals = _totals_from_wire(n, "pncounter decrements")
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PNCounter) and self._p == other._p and self._n == other._n

    def __repr__(self) -> str:
        return f"PNCounter(value={self.value})"
