"""Live replica handles: mutate a replica like a plain CRDT, and the write replicates.

Both drivers hand out the same handle: `node.replica("hits", PNCounter).increment(3)` applies
locally, stamps last-writer-wins writes with the node's hybrid clock, and passes the delta to
the driver, which gives it to the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from crdts import LWWMap, LWWRegister, Timestamp

T = TypeVar("T")

MUTATORS = frozenset(
    {"increment", "decrement", "add", "remove", "clear", "set", "delete", "update", "transact"}
)
_TIMESTAMPED: dict[type, frozenset[str]] = {
    LWWRegister: frozenset({"set"}),
    LWWMap: frozenset({"set", "delete"}),
}


class ReplicaHandle(Generic[T]):
    """A replica as the application sees it: reads are local, mutators replicate."""

    __slots__ = ("_check", "_clock", "_crdt", "_write", "name")

    def __init__(
        self,
        name: str,
        crdt: T,
        write: Callable[[str, Any], None],
        clock: Callable[[], Timestamp],
        check: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self._crdt = crdt
        self._write = write
        self._clock = clock
        self._check = check

    @property
    def crdt(self) -> T:
        """The CRDT itself (mutating it directly does not replicate)."""
        return self._crdt

    @property
    def value(self) -> Any:
        """The replica's current value, read locally."""
        return self._crdt.value  # type: ignore[attr-defined]

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self._crdt, attr)
        if attr not in MUTATORS:
            return target
        stamped = attr in _TIMESTAMPED.get(type(self._crdt), frozenset())

        def mutate(*args: Any, **kwargs: Any) -> Any:
            if self._check is not None:
                self._check()  # e.g. the node is stopped: refuse before touching the replica
            if stamped and "ts" not in kwargs:
                kwargs["ts"] = self._clock()
            delta = target(*args, **kwargs)
            self._write(self.name, delta)
            return delta

        mutate.__name__ = attr
        mutate.__doc__ = target.__doc__
        return mutate

    def __contains__(self, item: object) -> bool:
        return item in self._crdt  # type: ignore[operator]

    def __len__(self) -> int:
        return len(self._crdt)  # type: ignore[arg-type]

    def __iter__(self) -> Any:
        return iter(self._crdt)  # type: ignore[call-overload]

    def __repr__(self) -> str:
        return f"ReplicaHandle({self.name!r}, {self._crdt!r})"
