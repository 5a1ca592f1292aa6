"""The rumour queue, in the memberlist style (TransmitLimitedQueue).

Each rumour is piggybacked `retransmit_mult * ceil(log10(N + 1))` times, least-sent first, and
newer news about a member replaces older news about it in the queue.
"""

from __future__ import annotations

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
        sent = self._sent
        if not sent:
            return ()
        buckets = self._buckets
        moves: list[tuple[int, list[tuple[str, Rumour]]]] = []
        need = count
        for transmits in sorted(buckets):
            bucket = buckets[transmits]
            if need >= len(bucket):  # the whole bucket, newest first
                del buckets[transmits]
                items = list(bucket.items())
                items.reverse()
            else:
                items = [bucket.popitem() for _ in range(need)]  # the newest of the least sent
            moves.append((transmits, items))
            need -= len(items)
            if not need:
                break
        # re-queued only now, so a rumour moved up a bucket is not taken twice in one call
        out: list[Rumour] = []
        for transmits, items in moves:
            after = transmits + 1
            if after >= limit:
                for node, rumour in items:
                    del sent[node]
                    out.append(rumour)
            else:
                later = buckets.get(after)
                if later is None:
                    later = buckets[after] = {}
                for node, rumour in items:
                    sent[node] = after
                    later[node] = rumour
                    out.append(rumour)
        return tuple(out)

    def pending(self) -> list[Rumour]:
        """Every queued rumour (for inspection)."""
        return [rumour for bucket in self._buckets.values() for rumour in bucket.values()]
