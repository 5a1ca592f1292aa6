"""Singletons and spread workers (being built)."""

from __future__ import annotations

from typing import Any


class Singleton:
    """A singleton's handle."""


class Spread:
    """A spread's handle."""


class Placement:
    """Singletons and spread workers of one node."""

    def __init__(self, node: Any, registry: Any) -> None:
        self.node = node

    def singleton(self, name: str, run: Any, **options: Any) -> Singleton:
        """Not built yet."""
        raise NotImplementedError("singletons are not built yet")

    def spread(self, name: str, count: int, run: Any) -> Spread:
        """Not built yet."""
        raise NotImplementedError("spread is not built yet")

    def on_event(self, event: Any) -> None:
        """Membership changes."""

    def close(self) -> None:
        """Stop everything."""
