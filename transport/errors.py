"""The transport's errors. Remote kinds (a peer misbehaved) close that one connection; local
kinds (the caller misused the API) are ValueErrors as well."""

from __future__ import annotations


class TransportError(Exception):
    """Base of the transport's errors."""


class FramingError(TransportError):
    """A peer's byte stream is not a valid sequence of frames."""


class FrameTooLarge(FramingError):
    """A length prefix announced a frame above the limit; refused before its body is read."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"frame of {length} bytes exceeds the limit of {limit} bytes")
        self.length = length
        self.limit = limit


class AuthenticationError(TransportError):
    """A sealed frame could not be opened: wrong key, unknown key id, tampering or truncation."""


class KeyringError(TransportError, ValueError):
    """The caller misused a keyring (bad key, removing the primary, using an unknown key)."""


class HandshakeError(TransportError):
    """A connection could not be established; `reason` is a short key, the message says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
