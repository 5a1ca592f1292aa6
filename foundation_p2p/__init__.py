"""foundation-p2p: replicated state for Python services, with no central coordinator."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from foundation_p2p.app import start, stop
    from foundation_p2p.config import Config, ConfigError
    from foundation_p2p.engine import LocalProtocolError, ProtocolError, RemoteProtocolError
    from foundation_p2p.node import Node
    from foundation_p2p.services.messaging import RemoteError
    from foundation_p2p.services.registry import ServiceNotFound
    from foundation_p2p.services.state import ConsistencyTimeout, SharedState

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Every public name loads on first use, so that `foundation-p2p --help`, and a node that
    # needs only some of the package, pay only for what they touch.
    if name in ("Config", "ConfigError"):
        from foundation_p2p import config

        return getattr(config, name)
    if name in ("LocalProtocolError", "ProtocolError", "RemoteProtocolError"):
        from foundation_p2p.engine import errors

        return getattr(errors, name)
    # Node, start and stop pull in asyncio, aiohttp and the transport: load them on first use so
    # that `import foundation_p2p` for the engine or the simulator stays light.
    if name == "Node":
        from foundation_p2p.node import Node

        return Node
    if name in ("start", "stop"):
        from foundation_p2p import app

        return getattr(app, name)
    if name in ("SharedState", "ConsistencyTimeout"):
        from foundation_p2p import app  # installs the default node for SharedState(name)
        from foundation_p2p.services import state

        return getattr(state, name)
    if name == "ServiceNotFound":
        from foundation_p2p.services.registry import ServiceNotFound

        return ServiceNotFound
    if name == "RemoteError":
        from foundation_p2p.services.messaging import RemoteError

        return RemoteError
    raise AttributeError(f"module 'foundation_p2p' has no attribute {name!r}")


__all__ = [
    "Config",
    "ConfigError",
    "ConsistencyTimeout",
    "LocalProtocolError",
    "Node",
    "ProtocolError",
    "RemoteError",
    "RemoteProtocolError",
    "ServiceNotFound",
    "SharedState",
    "__version__",
    "start",
    "stop",
]
