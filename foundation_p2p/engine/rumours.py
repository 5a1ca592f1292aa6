"""The rumour queue, in the memberlist style (TransmitLimitedQueue).

Each rumour is piggybacked `retransmit_mult * ceil(log10(N + 1))` times, least-sent first, and
newer news about a member replaces older news about it in the queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from foundation_p2p.engine.messages import Rumour


@dataclass(slots=True)
class _Queued:
    rumour: Rumour
    transmits: int
    order: int


class RumourQueue:
    """Rumours waiting to be piggybacked, at most one per member."""

    def __init__(self) -> None:
        self._by_node: dict[str, _Queued] = {}
        self._order = 0

    def __len__(self) -> int:
        return len(self._by_node)

    def push(self, rumour: Rumour) -> None:
        """Queue news about a member, replacing older news about the same member."""
        self._order += 1
        self._by_node[rumour.node] = _Queued(rumour, 0, self._order)

    def take(self, count: int, limit: int) -> tuple[Rumour, ...]:
        """Up to `count` rumours, least-sent (then newest) first; each is dropped after `limit`."""
        if not self._by_node:
            return ()
        chosen = sorted(self._by_node.values(), key=lambda q: (q.transmits, -q.order))[:count]
        for queued in chosen:
            queued.transmits += 1
            if queued.transmits >= limit:
                del self._by_node[queued.rumour.node]
        return tuple(q.rumour for q in chosen)

    def pending(self) -> list[Rumour]:
        """Every queued rumour (for inspection)."""
        return [q.rumour for q in self._by_node.values()]
