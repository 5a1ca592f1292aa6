"""The keyring: sealed frames open only with the right key and AAD; rotation; key helpers."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport import (
    SEAL_OVERHEAD,
    AuthenticationError,
    Keyring,
    KeyringError,
    derive_token,
    generate_key,
    key_file_warnings,
    key_from_text,
    key_id,
    key_to_text,
    load_key_file,
)

KEY = generate_key()
OTHER = generate_key()


@given(st.binary(max_size=500), st.binary(max_size=40))
def test_round_trip(plaintext: bytes, aad: bytes) -> None:
    ring = Keyring(KEY)
    sealed = ring.seal(plaintext, aad)
    assert len(sealed) == len(plaintext) + SEAL_OVERHEAD
    assert Keyring(KEY).open(sealed, aad) == plaintext


def test_sealed_format_is_version_key_id_nonce_ciphertext() -> None:
    """1-byte version, first 4 bytes of SHA-256(key), 12-byte nonce, ciphertext + 16-byte tag."""
    sealed = Keyring(KEY).seal(b"hello")
    assert sealed[0] == 1
    assert sealed[1:5] == hashlib.sha256(KEY).digest()[:4]
    assert len(sealed) == 1 + 4 + 12 + len(b"hello") + 16


def test_wrong_key_is_refused() -> None:
    with pytest.raises(AuthenticationError, match="unknown key"):
        Keyring(OTHER).open(Keyring(KEY).seal(b"secret"))


def test_wrong_aad_is_refused() -> None:
    """A frame sealed for one cluster (or connection) does not open for another."""
    sealed = Keyring(KEY).seal(b"secret", b"cluster-a")
    with pytest.raises(AuthenticationError, match="does not verify"):
        Keyring(KEY).open(sealed, b"cluster-b")


@given(st.binary(min_size=1, max_size=64), st.data())
def test_any_tampered_byte_is_refused(plaintext: bytes, data: st.DataObject) -> None:
    sealed = bytearray(Keyring(KEY).seal(plaintext, b"aad"))
    index = data.draw(st.integers(min_value=0, max_value=len(sealed) - 1))
    sealed[index] ^= data.draw(st.integers(min_value=1, max_value=255))
    with pytest.raises(AuthenticationError):
        Keyring(KEY).open(bytes(sealed), b"aad")


@given(st.binary(max_size=64), st.data())
def test_any_truncation_is_refused(plaintext: bytes, data: st.DataObject) -> None:
    sealed = Keyring(KEY).seal(plaintext)
    cut = data.draw(st.integers(min_value=0, max_value=len(sealed) - 1))
    with pytest.raises(AuthenticationError):
        Keyring(KEY).open(sealed[:cut])


def test_unknown_version_is_refused() -> None:
    sealed = Keyring(KEY).seal(b"x")
    with pytest.raises(AuthenticationError, match="version"):
        Keyring(KEY).open(b"\x02" + sealed[1:])


def test_key_rotation_without_downtime() -> None:
    """Install the new key everywhere, use it, then remove the old one."""
    sender, receiver = Keyring(KEY), Keyring(KEY)
    old_sealed = sender.seal(b"old")
    sender.install(OTHER)
    receiver.install(OTHER)
    assert sender.primary_id() == key_id(KEY)  # installing does not switch the primary
    sender.use(OTHER)
    assert sender.primary_id() == key_id(OTHER)
    new_sealed = sender.seal(b"new")
    assert new_sealed[1:5] == hashlib.sha256(OTHER).digest()[:4]
    assert receiver.open(new_sealed) == b"new"
    assert receiver.open(old_sealed) == b"old"  # the old key still opens
    receiver.use(OTHER)
    receiver.remove(KEY)
    assert receiver.key_ids() == [key_id(OTHER)]
    with pytest.raises(AuthenticationError):
        receiver.open(old_sealed)
    assert receiver.open(sender.seal(b"still")) == b"still"


def test_removing_the_primary_key_is_refused() -> None:
    ring = Keyring(KEY, [OTHER])
    with pytest.raises(KeyringError, match="primary key; use\\(\\) another key"):
        ring.remove(KEY)
    ring.use(OTHER)
    ring.remove(KEY)
    assert ring.key_ids() == [key_id(OTHER)]


def test_using_or_removing_an_unknown_key_is_refused() -> None:
    ring = Keyring(KEY)
    with pytest.raises(KeyringError, match="install\\(\\) it first"):
        ring.use(OTHER)
    with pytest.raises(KeyringError, match="not installed"):
        ring.remove(OTHER)


def test_an_empty_keyring_takes_its_first_key_as_primary() -> None:
    ring = Keyring()
    assert len(ring) == 0 and ring.primary_id() is None
    with pytest.raises(KeyringError, match="empty"):
        ring.seal(b"x")
    ring.install(key_to_text(KEY))  # keys may be given as their base64 text
    ring.install(OTHER)
    assert ring.primary_id() == key_id(KEY)
    assert ring.key_ids() == [key_id(KEY), key_id(OTHER)]
    assert Keyring(KEY).open(ring.seal(b"x")) == b"x"


def test_keys_must_be_32_bytes() -> None:
    for bad in (b"", b"short", os.urandom(16), os.urandom(33)):
        with pytest.raises(KeyringError, match="32 bytes"):
            Keyring(bad)


def test_nonces_never_repeat() -> None:
    """Nonces are the keyring's salt and a counter: distinct across many seals, even under
    key changes, and two keyrings draw different salts."""
    ring = Keyring(KEY, [OTHER])
    nonces = set()
    for i in range(20_000):
        if i == 10_000:
            ring.use(OTHER)
        nonces.add(ring.seal(b"")[5:17])
    assert len(nonces) == 20_000
    assert len({n[:4] for n in nonces}) == 1
    counters = sorted(int.from_bytes(n[4:], "big") for n in nonces)
    assert counters == list(range(counters[0], counters[0] + 20_000))
    salts = {Keyring(KEY).seal(b"")[5:9] for _ in range(50)}
    assert len(salts) > 45


def test_key_text_round_trip_and_bad_text() -> None:
    assert key_from_text(key_to_text(KEY)) == KEY
    assert key_from_text("  " + key_to_text(KEY) + "\n") == KEY
    with pytest.raises(KeyringError, match="base64"):
        key_from_text("not base64 at all!")
    with pytest.raises(KeyringError, match="32 bytes"):
        key_from_text(key_to_text(KEY)[:-8])


def test_key_id_is_short_hex_of_sha256() -> None:
    assert key_id(KEY) == hashlib.sha256(KEY).hexdigest()[:16]
    assert Keyring.key_id(key_to_text(KEY)) == key_id(KEY)


def test_load_key_file_and_permission_warnings(tmp_path: Path) -> None:
    path = tmp_path / "cluster.key"
    path.write_text(key_to_text(KEY) + "\n")
    path.chmod(0o600)
    assert load_key_file(path) == KEY
    assert key_file_warnings(path) == []
    path.chmod(0o644)
    assert load_key_file(path) == KEY  # loaded anyway; the warning is separate
    (warning,) = key_file_warnings(path)
    assert "chmod 600" in warning and "644" in warning


def test_load_key_file_refuses_garbage_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(b"\xff\xfe binary")
    with pytest.raises(KeyringError, match=r"bad\.key"):
        load_key_file(path)
    path.write_text("dG9vIHNob3J0")
    with pytest.raises(KeyringError, match=r"bad\.key.*32 bytes"):
        load_key_file(path)


def test_derive_token_is_stable_and_separates_purposes_and_keys() -> None:
    token = derive_token(KEY, "http-admin")
    assert token == derive_token(KEY, "http-admin")
    assert len(token) == 64 and int(token, 16) >= 0
    assert token != derive_token(KEY, "yjs-client")
    assert token != derive_token(OTHER, "http-admin")
    with pytest.raises(ValueError):
        derive_token(KEY, "")
    ring = Keyring(KEY, [OTHER])
    assert ring.tokens("http-admin") == [token, derive_token(OTHER, "http-admin")]
