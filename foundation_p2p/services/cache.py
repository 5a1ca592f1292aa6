"""Caches (being built)."""

from __future__ import annotations

from typing import Any


class Cache:
    """A cache."""

    def __init__(self, node: Any, registry: Any, messaging: Any, name: str, **options: Any) -> None:
        self.options = options
        raise NotImplementedError("caches are not built yet")

    def on_event(self, event: Any) -> None:
        """Membership changes."""
