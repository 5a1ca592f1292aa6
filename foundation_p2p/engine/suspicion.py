"""Lifeguard suspicion timers: start long, shrink as independent members confirm the suspicion."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(slots=True)
class Suspicion:
    """One member under suspicion at a given incarnation.

    timeout = max(min, max - (max - min) * log(c + 1) / log(k + 1)), where c counts
    confirmations from members other than the first accuser and k is how many are expected.
    """

    incarnation: int
    started: float
    minimum: float
    maximum: float
    expected: int
    accusers: set[str] = field(default_factory=set)
    _deadline: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._deadline = self.started + self.timeout()

    def confirm(self, accuser: str) -> bool:
        """Count an independent accuser; return whether it was new and counted.

        As memberlist's suspicion.Confirm: once `expected` confirmations are in (the timeout
        is then at its minimum), further accusers are not counted, so not re-gossiped either.
        """
        if self.full or accuser in self.accusers:
            return False
        self.accusers.add(accuser)
        self._deadline = self.started + self.timeout()
        return True

    @property
    def full(self) -> bool:
        """Whether no further confirmation can count (the first accuser plus `expected`)."""
        return len(self.accusers) > self.expected

    def timeout(self) -> float:
        """The current suspicion timeout in seconds."""
        confirmations = len(self.accusers) - 1
        if self.expected < 1:
            return self.minimum
        if confirmations <= 0:  # the usual case, a new suspicion: log(1) = 0
            return max(self.minimum, self.maximum)
        fraction = math.log(confirmations + 1) / math.log(self.expected + 1)
        return max(self.minimum, self.maximum - (self.maximum - self.minimum) * fraction)

    def deadline(self) -> float:
        """When the member is declared dead unless it refutes."""
        return self._deadline
