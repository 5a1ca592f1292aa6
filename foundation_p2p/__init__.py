"""foundation-p2p: replicated state for Python services, with no central coordinator."""

__version__ = "0.1.0"

__all__ = ["__version__"]
