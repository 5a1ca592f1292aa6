"""The wire: TCP, framing, encryption and discovery. Knows nothing of CRDTs."""

from transport.errors import (
    AuthenticationError,
    FrameTooLarge,
    FramingError,
    HandshakeError,
    KeyringError,
    TransportError,
)
from transport.framing import FrameDecoder, encode_frame
from transport.security import (
    SEAL_OVERHEAD,
    Keyring,
    derive_token,
    generate_key,
    key_file_warnings,
    key_from_text,
    key_id,
    key_to_text,
    load_key_file,
)
from transport.tcp import REFUSAL_REASONS, Limits, Transport, format_address, parse_address

__all__ = [
    "AuthenticationError",
    "FrameDecoder",
    "FrameTooLarge",
    "FramingError",
    "HandshakeError",
    "Keyring",
    "KeyringError",
    "Limits",
    "REFUSAL_REASONS",
    "SEAL_OVERHEAD",
    "Transport",
    "TransportError",
    "derive_token",
    "encode_frame",
    "format_address",
    "generate_key",
    "key_file_warnings",
    "key_from_text",
    "key_id",
    "key_to_text",
    "load_key_file",
    "parse_address",
]
