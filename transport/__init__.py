"""The wire: TCP, framing, encryption and discovery. Knows nothing of CRDTs."""

__all__: list[str] = []
