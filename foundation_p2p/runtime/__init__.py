"""The asyncio runtime: the driver around the engine, the HTTP API, the thread facade."""

from foundation_p2p.runtime.driver import Driver
from foundation_p2p.runtime.thread import NodeThread, NodeTimeout, ThreadSafeReplica

__all__ = ["Driver", "NodeThread", "NodeTimeout", "ThreadSafeReplica"]
