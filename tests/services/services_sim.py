"""Cluster services on the simulator: one Registry (and Placement) per SimNode, fed the node's
engine events as virtual time runs. Shared by the registry and placement tests."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from foundation_p2p.services.registry import Registry
from simulations.cluster import SimCluster


class SimServices:
    """Services on every node of a SimCluster, pumped with engine events every `step`."""

    def __init__(
        self, sim: SimCluster, extra: Callable[[Any, Registry], Any] | None = None
    ) -> None:
        self.sim = sim
        self.registries: dict[str, Registry] = {}
        self.extras: dict[str, Any] = {}
        self._extra = extra
        self._seen: dict[str, int] = {}
        self._engines: dict[str, Any] = {}
        for node_id in sim.nodes:
            self._attach(node_id)

    def _attach(self, node_id: str) -> None:
        node = self.sim.nodes[node_id]
        self.registries[node_id] = Registry(node, rng=random.Random(node_id))
        if self._extra is not None:
            self.extras[node_id] = self._extra(node, self.registries[node_id])
        self._seen[node_id] = len(node.events)
        self._engines[node_id] = node.engine

    def pump(self) -> None:
        """Deliver the events each live node's engine emitted since the last pump."""
        for node_id, node in self.sim.nodes.items():
            if not node.up:
                continue
            if node.engine is not self._engines[node_id]:  # restarted: fresh services
                self._attach(node_id)
            events = node.events[self._seen[node_id] :]
            self._seen[node_id] = len(node.events)
            for _, event in events:
                self.registries[node_id].on_event(event)
                on_event = getattr(self.extras.get(node_id), "on_event", None)
                if on_event is not None:
                    on_event(event)

    def run(
        self, seconds: float, step: float = 0.05, check: Callable[[], None] | None = None
    ) -> None:
        """Advance virtual time, pumping events (and calling `check`) every `step`."""
        end = self.sim.now + seconds
        while self.sim.now < end - 1e-9:
            self.sim.run_for(min(step, end - self.sim.now))
            self.pump()
            if check is not None:
                check()

    def run_until(self, predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
        """Run until `predicate()` holds; False after `timeout` virtual seconds."""
        end = self.sim.now + timeout
        while not predicate():
            if self.sim.now >= end:
                return False
            self.run(0.05)
        return True
