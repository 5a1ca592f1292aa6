"""The rumour queue, in the memberlist style (TransmitLimitedQueue).

Each rumour is piggybacked `retransmit_mult * ceil(log10(N + 1))` times, least-sent first, and
newer news about a member replaces older news about it in the queue.
"""

from __future__ import annotations

from itertools import islice

from foundation_p2p.engine.messages import Rumour


class RumourQueue:
    """Rumours waiting to be piggybacked, at most one per member.

    Kept in buckets by how often each was sent, newest last within a bucket, so taking the
    least-sent rumours costs what is taken, not what is queued.
    """

    def __init__(self) -> None:
        self._buckets: dict[int, dict[str, Rumour]] = {}
        self._sent: dict[str, int] = {}  # node -> transmits of its queued rumour

    def __len__(self) -> int:
        return len(self._sent)

    def push(self, rumour: Rumour) -> None:
        """Queue news about a member, replacing older news about the same member."""
        previous = self._sent.pop(rumour.node, None)
        if previous is not None:
            del self._buckets[previous][rumour.node]
        self._sent[rumour.node] = 0
        self._buckets.setdefault(0, {})[rumour.node] = rumour

    def take(self, count: int, limit: int) -> tuple[Rumour, ...]:
        """Up to `count` rumours, least-sent (then newest) first; each is dropped after `limit`."""
        if not self._sent:
            return ()
        chosen: list[tuple[int, Rumour]] = []
        for transmits in sorted(self._buckets):
            bucket = self._buckets[transmits]
            for node in list(islice(reversed(bucket), count - len(chosen))):
                chosen.append((transmits, bucket.pop(node)))
            if len(chosen) >= count:
                break
        for transmits, rumour in chosen:
            if transmits + 1 >= limit:
                del self._sent[rumour.node]
            else:
                self._sent[rumour.node] = transmits + 1
                self._buckets.setdefault(transmits + 1, {})[rumour.node] = rumour
        for transmits, _ in chosen:
            if transmits in self._buckets and not self._buckets[transmits]:
                del self._buckets[transmits]
        return tuple(rumour for _, rumour in chosen)

    def pending(self) -> list[Rumour]:
        """Every queued rumour (for inspection)."""
        return [rumour for bucket in self._buckets.values() for rumour in bucket.values()]
