"""Services built on the runtime: replica handles, shared state, registry, messaging, cache."""

from foundation_p2p.services.replicas import ReplicaHandle

__all__ = ["ReplicaHandle"]
