"""The application code under test: warehouse stock kept in conflict-free counters.

It runs on anything with `replica(name, cls)`: a real `foundation_p2p.Node` in production, a
`SimCluster` node in the tests. Any warehouse may receive or ship at any time, even cut off
from the others; the counters merge without losing a movement.
"""

from __future__ import annotations

from typing import Any, Protocol

from crdts import PNCounter


class HasReplicas(Protocol):
    """A Node or a SimNode: both hand out live replica handles."""

    def replica(self, name: str, cls: type[Any], **options: Any) -> Any: ...


class Inventory:
    """Stock per item, as one warehouse (node) sees it."""

    def __init__(self, node: HasReplicas) -> None:
        self.node = node

    def receive(self, item: str, count: int) -> None:
        """`count` units of `item` arrived here."""
        self._counter(item).increment(count)

    def ship(self, item: str, count: int) -> None:
        """`count` units of `item` left from here."""
        self._counter(item).decrement(count)

    def stock(self, item: str) -> int:
        """Units of `item` in the whole company, as far as this warehouse has heard."""
        return int(self._counter(item).value)

    def _counter(self, item: str) -> Any:
        return self.node.replica(f"stock/{item}", PNCounter)
