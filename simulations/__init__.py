"""A deterministic simulator that drives the real protocol engine on virtual time."""

__all__: list[str] = []
