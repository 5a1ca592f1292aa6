"""Hybrid logical clocks (Kulkarni et al.): timestamps close to wall time that respect causality.

The clock never reads the time itself: the caller passes `wall_ms` to every call.
"""

from __future__ import annotations

from typing import NamedTuple

from crdts.base import INT64_MAX, DecodeError, WireValue, check_replica, expect_int, expect_str

MAX_COUNTER = 2**32 - 1


class ClockDriftError(ValueError):
    """A remote timestamp is further ahead of our wall clock than the clock allows."""


class Timestamp(NamedTuple):
    """A hybrid timestamp: ordered by wall time, then logical counter, then node id."""

    wall_ms: int
    counter: int = 0
    node: str = ""

    def to_wire(self) -> WireValue:
        """As a msgpack-safe list."""
        return [self.wall_ms, self.counter, self.node]

    @classmethod
    def from_wire(cls, obj: WireValue) -> Timestamp:
        """Decode `to_wire` output; DecodeError on anything else."""
        if not isinstance(obj, list | tuple) or len(obj) != 3:
            raise DecodeError(f"timestamp: expected [wall_ms, counter, node], got {obj!r:.80}")
        return cls(
            expect_int(obj[0], "timestamp wall_ms", 0, INT64_MAX),
            expect_int(obj[1], "timestamp counter", 0, MAX_COUNTER),
            expect_str(obj[2], "timestamp node"),
        )

    @classmethod
    def checked(cls, ts: object) -> Timestamp:
        """`ts` if it is a valid Timestamp, else TypeError/ValueError (mutators call this first)."""
        if not isinstance(ts, Timestamp):
            raise TypeError(f"expected a Timestamp, got {type(ts).__name__}")
        if type(ts.wall_ms) is not int or not 0 <= ts.wall_ms <= INT64_MAX:
            raise ValueError(f"timestamp wall_ms {ts.wall_ms!r} is not an int in [0, 2**63)")
        if type(ts.counter) is not int or not 0 <= ts.counter <= MAX_COUNTER:
            raise ValueError(f"timestamp counter {ts.counter!r} is not an int in [0, 2**32)")
        if type(ts.node) is not str:
            raise TypeError(f"timestamp node {ts.node!r} is not a str")
        return ts


class HLC:
    """A hybrid logical clock owned by one node."""

    def __init__(self, node: str, max_drift_ms: int | None = None) -> None:
        self.node = check_replica(node)
        self.max_drift_ms = max_drift_ms
        self._last = Timestamp(0, 0, node)

    @property
    def last(self) -> Timestamp:
        """The latest timestamp issued or observed."""
        return self._last

    def now(self, wall_ms: int) -> Timestamp:
        """A timestamp for a local event, strictly greater than every earlier one."""
        _check_wall(wall_ms)
        last = self._last
        if wall_ms > last.wall_ms:
            self._last = Timestamp(wall_ms, 0, self.node)
        else:
            self._last = Timestamp(last.wall_ms, self._next_counter(last.counter), self.node)
        return self._last

    def observe(self, remote: Timestamp, wall_ms: int) -> Timestamp:
        """Advance past a timestamp received from a peer; return the new local timestamp."""
        Timestamp.checked(remote)
        _check_wall(wall_ms)
        if self.max_drift_ms is not None and remote.wall_ms - wall_ms > self.max_drift_ms:
            raise ClockDriftError(
                f"remote timestamp from {remote.node!r} is {remote.wall_ms - wall_ms} ms ahead "
                f"of our clock (max_drift_ms={self.max_drift_ms})"
            )
        last = self._last
        wall = max(wall_ms, last.wall_ms, remote.wall_ms)
        if wall == last.wall_ms == remote.wall_ms:
            counter = self._next_counter(max(last.counter, remote.counter))
        elif wall == last.wall_ms:
            counter = self._next_counter(last.counter)
        elif wall == remote.wall_ms:
            counter = self._next_counter(remote.counter)
        else:
            counter = 0
        self._last = Timestamp(wall, counter, self.node)
        return self._last

    @staticmethod
    def _next_counter(counter: int) -> int:
        if counter >= MAX_COUNTER:
            raise ClockDriftError("logical counter exhausted: the wall clock has not moved")
        return counter + 1


def _check_wall(wall_ms: object) -> None:
    if type(wall_ms) is not int or not 0 <= wall_ms <= INT64_MAX:
        raise ValueError(f"wall_ms must be an int in [0, 2**63), got {wall_ms!r}")
