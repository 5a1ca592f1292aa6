"""start()/stop(): the default node for synchronous programs."""

from __future__ import annotations

import threading
from typing import Any

from foundation_p2p.node import Node
from foundation_p2p.runtime.thread import NodeThread

_lock = threading.Lock()
_default: NodeThread | None = None


def start(**options: Any) -> NodeThread:
    """Start the default node on a background thread (same options as Node) and return it."""
    global _default
    with _lock:
        if _default is not None:
            raise RuntimeError("the default node is already started; call stop() first")
        _default = NodeThread(Node(**options)).start()
        return _default


def stop(leave: bool = True) -> None:
    """Stop the default node, leaving the cluster gracefully; a no-op if none is running."""
    global _default
    with _lock:
        node, _default = _default, None
    if node is not None:
        node.stop(leave=leave)


def default_node() -> NodeThread | None:
    """The node start() made, if any."""
    return _default
