"""The two kinds of protocol error, in the h11 manner."""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of the engine's errors."""


class LocalProtocolError(ProtocolError):
    """The local caller misused the API (e.g. a replica asked for with the wrong type)."""


class RemoteProtocolError(ProtocolError):
    """A peer sent something invalid; the message is dropped and the engine carries on."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
