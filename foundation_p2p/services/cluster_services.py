"""The cluster services of one asyncio Node, created on first use: registry, messaging,
caches and placement, fed by the driver's events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from foundation_p2p.engine import AppReceived, Event
from foundation_p2p.services.messaging import Messaging
from foundation_p2p.services.registry import Registry

if TYPE_CHECKING:
    from foundation_p2p.node import Node
    from foundation_p2p.services.cache import Cache
    from foundation_p2p.services.placement import Placement


class ClusterServices:
    """Registry, messaging, caches and placement of one node, wired to its driver."""

    def __init__(self, node: Node) -> None:
        driver = node._require_driver()
        self.node = node
        self.registry = Registry(node)
        self.messaging = Messaging(node.node_id, self.registry, driver.send_app)
        self.caches: dict[str, Cache] = {}
        self._placement: Placement | None = None
        self._unsubscribe = driver.subscribe(self.on_event)

    @property
    def placement(self) -> Placement:
        """Singletons and spread workers (created on first use)."""
        if self._placement is None:
            from foundation_p2p.services.placement import Placement

            self._placement = Placement(self.node, self.registry)
        return self._placement

    def cache(self, name: str, **options: Any) -> Cache:
        """The cache `name`, opened with `options` the first time."""
        cache = self.caches.get(name)
        if cache is None:
            from foundation_p2p.services.cache import Cache

            cache = self.caches[name] = Cache(
                self.node, self.registry, self.messaging, name, **options
            )
        elif options and options != cache.options:
            raise ValueError(f"cache {name!r} is already open with {cache.options}, not {options}")
        return cache

    def on_event(self, event: Event) -> None:
        """Hand a driver event to every service that cares."""
        if isinstance(event, AppReceived):
            self.messaging.on_event(event)
            return
        self.registry.on_event(event)
        self.messaging.on_event(event)
        for cache in self.caches.values():
            cache.on_event(event)
        if self._placement is not None:
            self._placement.on_event(event)

    def close(self) -> None:
        """Stop singletons and handlers; detach from the driver."""
        if self._placement is not None:
            self._placement.close()
        for cache in self.caches.values():
            cache.close()
        self.messaging.close()
        self._unsubscribe()
