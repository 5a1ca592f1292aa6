"""Cluster keys: an AES-256-GCM keyring for sealing frames, key files and derived tokens.

A sealed frame is laid out as
    version (1 byte, 0x01) | key id (4 bytes) | nonce (12 bytes) | ciphertext + GCM tag (16 bytes)
so it is SEAL_OVERHEAD = 33 bytes longer than its plaintext. The key id is the first 4 bytes of
SHA-256(key); the first 5 bytes (version and key id) are authenticated along with the caller's
AAD. The nonce is a random 4-byte salt drawn per Keyring followed by an 8-byte counter that
starts at a random point below 2**63 and only goes up, so a Keyring never repeats a nonce and
two Keyrings that happen to draw the same salt still do not overlap in practice.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from transport.errors import AuthenticationError, KeyringError

KEY_BYTES = 32
SEAL_VERSION = 1
KEY_ID_BYTES = 4
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = 1 + KEY_ID_BYTES + NONCE_BYTES
SEAL_OVERHEAD = HEADER_BYTES + TAG_BYTES
_SALT_BYTES = 4
_COUNTER_LIMIT = 1 << 64
_TOKEN_INFO = b"foundation-p2p token v1: "


def generate_key() -> bytes:
    """A fresh random 32-byte cluster key."""
    return os.urandom(KEY_BYTES)


def key_id(key: bytes) -> str:
    """A key's short public name: the first 8 bytes of its SHA-256, in hex."""
    return hashlib.sha256(_checked(key)).digest()[:8].hex()


def key_to_text(key: bytes) -> str:
    """A key as standard base64 text (what key files and environment variables hold)."""
    return base64.b64encode(_checked(key)).decode("ascii")


def key_from_text(text: str) -> bytes:
    """The key written as base64 text; KeyringError if it is not base64 of exactly 32 bytes."""
    try:
        key = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError("a cluster key must be base64 text (see generate_key)") from None
    return _checked(key)


def load_key_file(path: str | os.PathLike[str]) -> bytes:
    """The key held as base64 text in a file (surrounding whitespace ignored)."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise KeyringError(f"key file {os.fspath(path)} does not hold base64 text") from None
    try:
        return key_from_text(text)
    except KeyringError as exc:
        raise KeyringError(f"key file {os.fspath(path)}: {exc}") from None


def key_file_warnings(path: str | os.PathLike[str]) -> list[str]:
    """Reasons to worry about a key file's permissions (empty when only its owner can read it)."""
    if os.name != "posix":
        return []
    mode = stat.S_IMODE(Path(path).stat().st_mode)
    if mode & 0o077:
        return [
            f"key file {os.fspath(path)} is accessible to group or others "
            f"(mode {mode:o}); run: chmod 600 {os.fspath(path)}"
        ]
    return []


def derive_token(key: bytes, purpose: str) -> str:
    """A hex secret for one purpose (e.g. "http-admin"), derived from a key with HKDF-SHA256."""
    if not purpose:
        raise ValueError("derive_token needs a non-empty purpose")
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=_TOKEN_INFO + purpose.encode("utf-8"),
    )
    return hkdf.derive(_checked(key)).hex()


class Keyring:
    """Keys this node accepts, one of them (the primary) used to seal what it sends.

    Keys are 32 bytes, or their base64 text. The first key installed becomes the primary.
    """

    def __init__(self, primary: bytes | str | None = None, others: Iterable[bytes | str] = ()):
        self._ciphers: dict[bytes, AESGCM] = {}  # wire key id -> cipher
        self._keys: dict[bytes, bytes] = {}  # wire key id -> key
        self._primary: bytes | None = None
        self._primary_cipher: AESGCM | None = None
        self._salt = os.urandom(_SALT_BYTES)
        self._counter = itertools.count(int.from_bytes(os.urandom(8), "big") >> 1)
        if primary is not None:
            self.install(primary)
        for key in others:
            self.install(key)

    def __len__(self) -> int:
        return len(self._keys)

    @staticmethod
    def key_id(key: bytes | str) -> str:
        """A key's short public name (see the module function key_id)."""
        return key_id(_as_key(key))

    def primary_id(self) -> str | None:
        """The short id of the key used for sealing (None while the keyring is empty)."""
        return None if self._primary is None else key_id(self._keys[self._primary])

    def key_ids(self) -> list[str]:
        """Short ids of every accepted key, the primary first."""
        wires = sorted(self._keys, key=lambda wire: wire != self._primary)
        return [key_id(self._keys[wire]) for wire in wires]

    def tokens(self, purpose: str) -> list[str]:
        """derive_token(key, purpose) for every accepted key, the primary first, so a token
        keeps working while its key is being rotated out."""
        wires = sorted(self._keys, key=lambda wire: wire != self._primary)
        return [derive_token(self._keys[wire], purpose) for wire in wires]

    def install(self, key: bytes | str) -> None:
        """Accept `key` for opening frames; it becomes the primary only if there is none."""
        key = _as_key(key)
        wire = _wire_id(key)
        known = self._keys.get(wire)
        if known is not None and known != key:
            raise KeyringError("two different keys share a key id; generate another key")
        self._keys[wire] = key
        self._ciphers.setdefault(wire, AESGCM(key))
        if self._primary is None:
            self.use(key)

    def use(self, key: bytes | str) -> None:
        """Seal with `key` from now on; it must be installed already."""
        key = _as_key(key)
        wire = _wire_id(key)
        if self._keys.get(wire) != key:
            raise KeyringError(f"key {key_id(key)} is not installed; install() it first")
        self._primary = wire
        self._primary_cipher = self._ciphers[wire]

    def remove(self, key: bytes | str) -> None:
        """Stop accepting `key`; refused for the primary key or a key not installed."""
        key = _as_key(key)
        wire = _wire_id(key)
        if self._keys.get(wire) != key:
            raise KeyringError(f"key {key_id(key)} is not installed")
        if wire == self._primary:
            raise KeyringError(
                f"key {key_id(key)} is the primary key; use() another key before removing it"
            )
        del self._keys[wire]
        del self._ciphers[wire]

    def seal(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        """`plaintext` encrypted and authenticated (with `aad`) under the primary key."""
        cipher = self._primary_cipher
        if cipher is None or self._primary is None:
            raise KeyringError("the keyring is empty; install() a key first")
        counter = next(self._counter)
        if counter >= _COUNTER_LIMIT:
            raise KeyringError("nonce counter exhausted; create a new Keyring")
        nonce = self._salt + counter.to_bytes(8, "big")
        head = _VERSION_BYTE + self._primary
        return head + nonce + cipher.encrypt(nonce, plaintext, head + aad)

    def open(self, data: bytes, aad: bytes = b"") -> bytes:
        """The plaintext of a sealed frame; AuthenticationError if it does not verify."""
        if len(data) < SEAL_OVERHEAD:
            raise AuthenticationError(f"sealed frame too short ({len(data)} bytes)")
        if data[0] != SEAL_VERSION:
            raise AuthenticationError(f"unknown sealed-frame version {data[0]}")
        wire = bytes(data[1 : 1 + KEY_ID_BYTES])
        cipher = self._ciphers.get(wire)
        if cipher is None:
            raise AuthenticationError(f"sealed with an unknown key (id prefix {wire.hex()})")
        view = memoryview(data)
        try:
            return cipher.decrypt(
                view[1 + KEY_ID_BYTES : HEADER_BYTES], view[HEADER_BYTES:], data[:5] + aad
            )
        except InvalidTag:
            raise AuthenticationError("frame does not verify: wrong key or tampered") from None


def _as_key(key: bytes | str) -> bytes:
    return key_from_text(key) if isinstance(key, str) else _checked(key)


_VERSION_BYTE = bytes([SEAL_VERSION])


def _checked(key: bytes) -> bytes:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        size = len(key) if isinstance(key, bytes | bytearray) else type(key).__name__
        raise KeyringError(f"a cluster key is {KEY_BYTES} bytes, got {size}")
    return key


def _wire_id(key: bytes) -> bytes:
    return hashlib.sha256(_checked(key)).digest()[:KEY_ID_BYTES]
