"""start()/stop(): the default node for synchronous programs, and SharedState's default node."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from foundation_p2p.config import Config
from foundation_p2p.node import Node
from foundation_p2p.runtime.thread import NodeThread
from foundation_p2p.services import state

_lock = threading.Lock()
_default: NodeThread | None = None
_embedded: NodeThread | None = None


def start(**options: Any) -> NodeThread:
    """Start the default node on a background thread (same options as Node) and return it."""
    global _default
    with _lock:
        if _default is not None:
            raise RuntimeError("the default node is already started; call stop() first")
        if _embedded is not None:
            raise RuntimeError(
                "SharedState was used before start(), on a local-only node; call start() "
                "before the first SharedState(...) (or stop() first)"
            )
        _default = NodeThread(Node(**options)).start()
        return _default


def stop(leave: bool = True) -> None:
    """Stop the default node (and the local-only one SharedState may have made), leaving the
    cluster gracefully; a no-op if none is running."""
    global _default, _embedded
    with _lock:
        nodes = [n for n in (_default, _embedded) if n is not None]
        _default = _embedded = None
    for node in nodes:
        node.stop(leave=leave)


def default_node() -> NodeThread | None:
    """The node start() made, if any."""
    return _default


def state_node() -> NodeThread:
    """The node `SharedState(name)` uses: the one start() made, else a local-only node
    (loopback, no discovery, no peers) created on first use."""
    global _embedded
    with _lock:
        if _default is not None:
            return _default
        if _embedded is None:
            local = Node(
                cluster=f"local-{uuid.uuid4().hex[:8]}",
                listen="127.0.0.1:0",
                discovery=None,
                config=Config.development(),
            )
            _embedded = NodeThread(local).start()
        return _embedded


state.set_default_node(state_node)
