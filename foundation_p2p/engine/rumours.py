"""The rumour queue, in the memberlist style (TransmitLimitedQueue).

Each rumour is piggybacked `retransmit_mult * ceil(log10(N + 1))` times, least-sent first, and
newer news about a member replaces older news about it in the queue.
"""

from __future__ import annotations

from foundation_p2p.engine.messages import Rumour


class RumourQueue:
    """Rumours waiting to be piggybacked, at most one per member.

    Kept in one stack per transmit count, newest on top, so taking the least-sent rumours
    costs what is taken, not what is queued. Replaced news is left where it lies and skipped
    when reached (each entry carries the token of its push); the stacks are swept when such
    leftovers outnumber the live rumours.
    """

    def __init__(self) -> None:
        self._stacks: list[list[tuple[int, Rumour]]] = [[]]  # index: times sent
        self._live: dict[str, int] = {}  # node -> token of its queued rumour
        self._token = 0
        self._entries = 0  # in the stacks, replaced ones included

    def __len__(self) -> int:
        return len(self._live)

    def push(self, rumour: Rumour) -> None:
        """Queue news about a member, replacing older news about the same member."""
        self._token += 1
        self._live[rumour.node] = self._token
        self._stacks[0].append((self._token, rumour))
        self._entries += 1
        if self._entries > 2 * len(self._live) + 64:
            self._sweep()

    def discard(self, node: str) -> None:
        """Drop the queued news about `node`, if any (it is left in place to be skipped)."""
        self._live.pop(node, None)

    def take(self, count: int, limit: int) -> tuple[Rumour, ...]:
        """Up to `count` rumours, least-sent (then newest) first; each is dropped after `limit`."""
        live = self._live
        if not live or count < 1:
            return ()
        known = live.get
        stacks = self._stacks
        out: list[Rumour] = []
        blocks: list[tuple[int, list[tuple[int, Rumour]]]] = []
        need = count
        dropped = 0  # entries leaving the stacks: replaced news, and news sent `limit` times
        for sent, stack in enumerate(stacks):
            if not stack:
                continue
            block: list[tuple[int, Rumour]] = []  # all go up to the next stack together
            while stack:
                entry = stack.pop()
                token, rumour = entry
                if known(rumour.node) != token:
                    dropped += 1  # replaced by newer news
                    continue
                out.append(rumour)
                block.append(entry)
                need -= 1
                if not need:
                    break
            if block:
                blocks.append((sent + 1, block))
            if not need:
                break
        # re-queued only now, so a rumour moved up a stack is not taken twice in one call
        for after, block in blocks:
            if after >= limit:
                for entry in block:
                    del live[entry[1].node]
                dropped += len(block)
            elif after < len(stacks):
                stacks[after].extend(block)
            else:
                stacks.append(block)
        self._entries -= dropped
        return tuple(out)

    def pending(self) -> list[Rumour]:
        """Every queued rumour (for inspection)."""
        live = self._live
        return [r for stack in self._stacks for token, r in stack if live.get(r.node) == token]

    def _sweep(self) -> None:
        live = self._live
        for stack in self._stacks:
            stack[:] = [entry for entry in stack if live.get(entry[1].node) == entry[0]]
        self._entries = sum(len(stack) for stack in self._stacks)
