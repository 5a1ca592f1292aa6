"""Fault injection for demos and drills: cut a running node off from its peers for a while.

A `PartitionGate` sits between the driver and the transport. While it is cut, every frame to
and from a peer is dropped silently in both directions, as a firewall dropping packets would
(the sender is not told), and connection events are withheld from the engine; the node keeps
serving its own reads and writes. It heals by itself when the cut's time is up, or on `heal()`.
A node has a gate only when it was started with fault injection on (`--demo-faults`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from foundation_p2p.runtime.driver import TransportLike

log = logging.getLogger("foundation_p2p.faults")

MAX_CUT_SECONDS = 3600.0


class PartitionGate:
    """A transport wrapper that drops all peer traffic while cut; counts what it dropped."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.transport: TransportLike | None = None
        self.counters: Counter[str] = Counter()
        self.clock = clock
        self._cut_until: float | None = None

    def attach(self, transport: TransportLike) -> None:
        """Gate `transport` (the node's, once started)."""
        self.transport = transport

    @property
    def cut(self) -> bool:
        """True while peer traffic is being dropped."""
        if self._cut_until is not None and self.clock() >= self._cut_until:
            self._cut_until = None
            log.warning("partition healed (its time was up)")
        return self._cut_until is not None

    @property
    def remaining(self) -> float:
        """Seconds until the cut heals by itself (0 when not cut)."""
        if not self.cut or self._cut_until is None:
            return 0.0
        return max(0.0, self._cut_until - self.clock())

    def cut_for(self, seconds: float) -> None:
        """Drop all peer traffic for `seconds` (0 < seconds <= 3600); ValueError otherwise."""
        number = isinstance(seconds, int | float) and not isinstance(seconds, bool)
        if not number or not 0 < seconds <= MAX_CUT_SECONDS:
            raise ValueError(f"seconds must be in (0, {MAX_CUT_SECONDS:g}], got {seconds!r}")
        self._cut_until = self.clock() + float(seconds)
        self.counters["cuts"] += 1
        log.warning("cut off from every peer for %.1f s (fault injection)", seconds)

    def heal(self) -> bool:
        """End the cut now; False if there was none."""
        if not self.cut:
            return False
        self._cut_until = None
        log.warning("partition healed")
        return True

    # --- TransportLike: the driver's outgoing side ---------------------------------------------

    def send(self, peer_id: str, body: bytes, address: str | None = None) -> bool:
        """Pass a frame on, or drop it while cut (reported as sent: a partition is silent)."""
        if self.cut:
            self.counters["dropped_out"] += 1
            return True
        return self.transport is not None and self.transport.send(peer_id, body, address)

    def disconnect(self, peer_id: str) -> bool:
        """Pass on: closing a connection is never blocked."""
        return self.transport is not None and self.transport.disconnect(peer_id)

    # --- the transport's incoming side -------------------------------------------------------

    def incoming(self, deliver: Callable[..., None]) -> Callable[..., None]:
        """`deliver` (a transport callback into the driver), withheld while cut."""

        def gated(*args: Any) -> None:
            if self.cut:
                self.counters["dropped_in"] += 1
                return
            deliver(*args)

        return gated
