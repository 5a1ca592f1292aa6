"""A Yjs document (pycrdt) behind the same CRDT interface as the other types.

The digest is the Yjs state vector and a delta is a Yjs update (bytes). A pycrdt Doc is safe
from one thread at a time only: the owner of a YDoc keeps it on one thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pycrdt import Array, Doc, Map, Text, TransactionEvent, merge_updates

from crdts.base import (
    DecodeError,
    WireValue,
    check_replica,
    expect_header,
    expect_str,
    fingerprint_of,
)

EMPTY_UPDATE = b"\x00\x00"
"""A valid Yjs update that changes nothing (no structs, empty delete set)."""

REMOTE_ORIGIN = "remote"
R = TypeVar("R")
_ROOT_TYPES = (Map, Array, Text)


def _is_interrupt(exc: BaseException) -> bool:
    return isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit)


class YDoc:
    """A replicated Yjs document: merge() takes updates, transact() returns the local delta."""

    TAG = "ydoc"
    VERSION = 1

    __slots__ = ("__weakref__", "_captured", "_doc", "_subscription", "replica")

    def __init__(self, replica: str, client_id: int | None = None) -> None:
        self.replica = check_replica(replica)
        self._doc: Doc[Any] = Doc() if client_id is None else Doc(client_id=client_id)
        self._captured: list[bytes] = []
        self._subscription = self._doc.observe(self._on_transaction)

    def _on_transaction(self, event: TransactionEvent) -> None:
        self._captured.append(bytes(event.update))

    @property
    def doc(self) -> Doc[Any]:
        """The underlying pycrdt Doc (read freely; write through transact() to get deltas)."""
        return self._doc

    @property
    def value(self) -> dict[str, Any]:
        """Every root type that has been declared with get(), as plain Python values."""
        return {name: root.to_py() for name, root in self._doc._roots.items()}

    def get(self, name: str, type: type[R]) -> R:
        """The root shared type `name` (a pycrdt Map, Array or Text), created if needed."""
        if type not in _ROOT_TYPES:
            raise TypeError(f"root type must be one of Map, Array, Text; got {type!r}")
        return self._doc.get(name, type=type)  # type: ignore[no-any-return]

    def transact(self, change: Callable[[Doc[Any]], object], origin: str = "local") -> bytes:
        """Run `change(doc)` in one transaction and return the update it made (the delta)."""
        self._captured.clear()
        with self._doc.transaction(origin=origin):
            change(self._doc)
        updates, self._captured = self._captured, []
        if not updates:
            return EMPTY_UPDATE
        return updates[0] if len(updates) == 1 else bytes(merge_updates(*updates))

    def merge(self, other: YDoc | bytes | bytearray) -> None:
        """Apply a Yjs update (bytes) or a whole other YDoc; DecodeError on a bad update."""
        update = other.full_update() if isinstance(other, YDoc) else other
        if not isinstance(update, bytes | bytearray):
            raise TypeError(f"merge takes a YDoc or update bytes, got {type(other).__name__}")
        self._captured.clear()
        try:
            with self._doc.transaction(origin=REMOTE_ORIGIN):
                self._doc.apply_update(bytes(update))
        except BaseException as exc:  # pycrdt panics surface as pyo3 PanicException
            if _is_interrupt(exc):
                raise
            raise DecodeError(f"ydoc: not a valid Yjs update: {exc}") from None
        finally:
            self._captured.clear()

    def full_update(self) -> bytes:
        """The whole document as one update."""
        return bytes(self._doc.get_update())

    def copy(self) -> YDoc:
        """An independent replica with the same content (a new Yjs client id)."""
        out = YDoc(self.replica)
        out.merge(self.full_update())
        return out

    def digest(self) -> bytes:
        """The Yjs state vector."""
        return bytes(self._doc.get_state())

    def delta_since(self, digest: Any) -> bytes:
        """The update a replica with state vector `digest` lacks; DecodeError on a bad vector."""
        if not isinstance(digest, bytes | bytearray):
            raise DecodeError(f"ydoc digest: expected bytes, got {type(digest).__name__}")
        try:
            return bytes(self._doc.get_update(bytes(digest)))
        except BaseException as exc:
            if _is_interrupt(exc):
                raise
            raise DecodeError(f"ydoc digest: not a valid state vector: {exc}") from None

    def fingerprint(self) -> bytes:
        """A hash of the whole document (a state vector misses deletions)."""
        return fingerprint_of(self.full_update())

    def to_wire(self) -> WireValue:
        """`["ydoc", 1, replica, full update bytes]`."""
        return [self.TAG, self.VERSION, self.replica, self.full_update()]

    @classmethod
    def from_wire(cls, obj: WireValue) -> YDoc:
        """Decode `to_wire` output; DecodeError on anything else."""
        _, _, replica, update = expect_header(obj, cls.TAG, cls.VERSION, 4)
        replica = expect_str(replica, "ydoc replica")
        if not replica:
            raise DecodeError("ydoc: empty replica id")
        if not isinstance(update, bytes | bytearray):
            raise DecodeError(f"ydoc: expected update bytes, got {type(update).__name__}")
        out = cls(replica)
        out.merge(update)
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, YDoc) and self.full_update() == other.full_update()

    def __repr__(self) -> str:
        return f"YDoc({self.replica!r}, state={self.digest().hex()})"
