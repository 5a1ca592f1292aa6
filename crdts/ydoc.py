"""A Yjs document (pycrdt) behind the same CRDT interface as the other types.

The digest is the Yjs state vector and a delta is a Yjs update (bytes). A pycrdt Doc is safe
from one thread at a time only: the owner of a YDoc keeps it on one thread.

Three things pycrdt 0.14 leaves to us, handled here:
- an update whose dependencies have not arrived waits inside the Doc, but `get_update()`
  leaves it out and yrs may integrate only part of it later; YDoc keeps such updates itself
  (`_pending`), re-applies them with every merge, and includes them in what it sends;
- the same content can be encoded with different block splits, so equality and fingerprints
  compare a canonical re-encoding;
- the first varint of an update or state vector is a count that yrs allocates for before
  checking it, so absurd counts are refused before pycrdt sees the bytes;
- a malformed update can make yrs panic (pyo3 PanicException, a BaseException) while it is
  applied, or leave content whose encoding does not decode. A remote update is applied to the
  replica directly, and the transaction's own encoding is decoded back (O(update)); on a
  panic or a bad encoding the update is refused with DecodeError, and the replica is checked
  against a checkpoint: the document's encoding taken at its first remote merge plus every
  update applied since (re-encoded once those outgrow it). If the replica differs from the
  checkpoint's replay, it is replaced by it (`generation` counts replacements, so holders of
  the old Doc's roots re-bind). A node that only writes keeps no checkpoint.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pycrdt import Array, Doc, Map, Text, TransactionEvent, merge_updates
from pycrdt import get_state as update_state

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
CHECKPOINT_FLOOR = 64 * 1024
"""Bytes of updates logged since the checkpoint before it is re-encoded, at least (past that,
when they outgrow the checkpoint itself): the log stays within the document's encoded size."""
R = TypeVar("R")
_ROOT_TYPES = (Map, Array, Text)


def _is_interrupt(exc: BaseException) -> bool:
    return isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit)


def _leading_count(data: bytes) -> int:
    """The first unsigned LEB128 varint of `data` (capped, so a hostile one stays cheap)."""
    value = shift = 0
    for byte in data[:10]:
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
        shift += 7
    return value


def _check_count(data: bytes, what: str) -> None:
    """Refuse a leading count the input could not hold (each entry takes at least 2 bytes)."""
    if _leading_count(data) > len(data) // 2:
        raise DecodeError(f"ydoc {what}: leading count exceeds what {len(data)} bytes can hold")


def _pycrdt(call: Callable[[], R], what: str) -> R:
    """Run a pycrdt call on peer bytes; its panics and errors become DecodeError."""
    try:
        return call()
    except BaseException as exc:  # pycrdt panics surface as pyo3 PanicException
        if _is_interrupt(exc):
            raise
        raise DecodeError(f"ydoc {what}: {exc}") from None


def _rehearse(update: bytes) -> None:
    """Decode an update and apply it to an empty scratch Doc (O(update)): what an update that
    waits for its dependencies, or one that would create a document, must pass first."""
    update_state(update)
    scratch: Doc[Any] = Doc()
    scratch.apply_update(update)
    scratch.get_update()
    scratch.get_state()


def validate_update(update: bytes) -> None:
    """Check peer bytes before building a document for them (a YDoc, once made, is never freed
    by pycrdt 0.14: its observer ties the Doc to itself outside Python's collector)."""
    _check_count(update, "update")
    _pycrdt(lambda: _rehearse(update), "update")


def _shape(doc: Doc[Any]) -> object:
    """What determines a document's content: its state vector and its normalized delete set
    (or, for a delete set laid out otherwise, a canonical re-encoding)."""
    vector = sorted(_decode_state(bytes(doc.get_state())).items())
    deleted = _delete_set(bytes(doc.get_update(doc.get_state())))
    if deleted is None:
        fresh: Doc[Any] = Doc()
        fresh.apply_update(doc.get_update())
        return bytes(fresh.get_update())
    return vector, deleted


def _merged_or_none(update: bytes, extra: list[bytes]) -> bytes | None:
    """`update` merged with `extra`, if yrs can merge them into bytes it can also read back."""
    try:
        merged = bytes(merge_updates(update, *extra)) if extra else update
        Doc().apply_update(merged)
        return merged
    except BaseException as exc:
        if _is_interrupt(exc):
            raise
        return None


def _varints(data: bytes) -> Iterator[int]:
    """The unsigned LEB128 varints of `data`, in order (IndexError past the end)."""
    pos = 0
    while True:
        value = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
        yield value


def _single_client_start(update: bytes) -> tuple[int, int] | None:
    """(client, start clock) of a Yjs v1 update holding structs of exactly one client."""
    numbers = _varints(update)
    try:
        if next(numbers) != 1:
            return None
        next(numbers)  # number of structs
        return next(numbers), next(numbers)
    except (IndexError, RuntimeError):
        return None


def _decode_state(vector: bytes) -> dict[int, int]:
    """A state vector as {client: clock}."""
    numbers = _varints(vector)
    out = {}
    for _ in range(next(numbers)):
        client = next(numbers)
        out[client] = next(numbers)
    return out


def _delete_set(update: bytes) -> list[list[int]] | None:
    """The delete set of an update without structs, as [client, start, end, start, end, ...]
    rows sorted by client, ranges sorted and merged (None if the update holds structs)."""
    numbers = _varints(update)
    try:
        if next(numbers) != 0:
            return None
        rows = []
        for _ in range(next(numbers)):
            client = next(numbers)
            ranges = []
            for _ in range(next(numbers)):
                clock = next(numbers)
                ranges.append((clock, clock + next(numbers)))
            merged: list[int] = []
            for start, end in sorted(ranges):
                if merged and start <= merged[-1]:
                    merged[-1] = max(merged[-1], end)
                elif end > start:
                    merged.extend((start, end))
            if merged:
                rows.append([client, *merged])
        return sorted(rows)
    except (IndexError, RuntimeError):
        return None


def update_clocks(update: bytes) -> dict[int, int]:
    """{client: clock} a document must reach to hold an update. pycrdt reports nothing for an
    update whose dependencies are missing, so a one-client update counts up to its first struct
    at least; and a delete-only update needs the structs it deletes (a document without them
    only parks the deletion, so it does not hold it yet)."""
    clocks = _decode_state(bytes(update_state(update)))
    start = _single_client_start(update)
    if start is not None and _leading_count(update) == 1:
        client, clock = start
        clocks[client] = max(clocks.get(client, 0), clock + 1)
    for client, *ranges in _delete_set(update) or ():
        clocks[client] = max(clocks.get(client, 0), ranges[-1])
    return clocks


class LocalDelta:
    """What a `YDoc.transaction()` block changed, as one Yjs update (set when the block ends)."""

    __slots__ = ("delta",)

    def __init__(self) -> None:
        self.delta = EMPTY_UPDATE


class YDoc:
    """A replicated Yjs document: merge() takes updates, transact() returns the local delta."""

    TAG = "ydoc"
    VERSION = 1

    __slots__ = (
        "__weakref__",
        "_applied",
        "_captured",
        "_checkpoint",
        "_committed",
        "_doc",
        "_logged",
        "_logged_bytes",
        "_open",
        "_pending",
        "_remote",
        "_subscription",
        "_unsent",
        "committing_local",
        "generation",
        "replica",
    )

    def __init__(self, replica: str, client_id: int | None = None) -> None:
        self.replica = check_replica(replica)
        self._doc: Doc[Any] = Doc() if client_id is None else Doc(client_id=client_id)
        self._captured: list[bytes] = []
        self._pending: list[bytes] = []  # updates waiting for their dependencies
        self._unsent: list[bytes] = []  # local changes of a transaction that raised
        self._checkpoint: bytes | None = None  # encoded document; None until a remote merge
        self._logged: list[bytes] = []  # every update applied since the checkpoint, in order
        self._logged_bytes = 0
        self._applied: bytes | None = None  # the encoding of the remote transaction just made
        self._open: Any = None  # an open local batch (a pycrdt transaction), see open_local()
        self._committed: list[bytes] = []  # local batches closed but not yet taken
        self._remote = False  # True while a remote update is applied to the replica
        self.committing_local = False
        """True while a local batch commits (observers of the roots may tell it apart)."""
        self.generation = 0
        """How many times the pycrdt Doc was replaced (rebuilt from the checkpoint after a
        refused update had changed it): a holder of its roots re-binds when this changes."""
        self._subscription = self._doc.observe(self._on_transaction)

    def _on_transaction(self, event: TransactionEvent) -> None:
        if self._remote:  # not ours to ship; kept to be checked, then logged
            self._applied = bytes(event.update)
            return
        update = bytes(event.update)
        self._captured.append(update)
        if self._checkpoint is not None:
            self._log(update)

    @property
    def doc(self) -> Doc[Any]:
        """The underlying pycrdt Doc (read freely; write through transact() to get deltas)."""
        return self._doc

    @property
    def value(self) -> dict[str, Any]:
        """Every root declared here with get(), as plain Python values."""
        return {name: root.to_py() for name, root in self._doc._roots.items() if root is not None}

    def get(self, name: str, type: type[R]) -> R:
        """The root shared type `name` (a pycrdt Map, Array or Text), created if needed."""
        if type not in _ROOT_TYPES:
            raise TypeError(f"root type must be one of Map, Array, Text; got {type!r}")
        return self._doc.get(name, type=type)  # type: ignore[no-any-return]

    def transact(self, change: Callable[[Doc[Any]], object], origin: str = "local") -> bytes:
        """Run `change(doc)` in one transaction and return the update it made (the delta).

        If `change` raises, what it changed before the error cannot be rolled back in Yjs: it
        is kept and shipped with the next delta. A pycrdt panic (e.g. an int beyond 64 bits)
        becomes a ValueError.
        """
        with self.transaction(origin) as result:
            change(self._doc)
        return result.delta

    @contextmanager
    def transaction(self, origin: str = "local") -> Iterator[LocalDelta]:
        """`with doc.transaction() as result:` edit the roots; `result.delta` is the update.

        Same rules as transact(): what a block that raises changed is shipped with the next
        delta, and a pycrdt panic becomes a ValueError.
        """
        result = LocalDelta()
        self._close_local()
        self._captured.clear()
        try:
            with self._doc.transaction(origin=origin):
                yield result
        except Exception:
            self._keep_unsent()
            raise
        except BaseException as exc:
            self._keep_unsent()
            if _is_interrupt(exc):
                raise
            raise ValueError(f"pycrdt refused the change: {exc}") from None
        updates = self._unsent + self._captured
        self._unsent, self._captured = [], []
        if not updates:
            result.delta = EMPTY_UPDATE
            return
        result.delta = updates[0] if len(updates) == 1 else bytes(merge_updates(*updates))

    def open_local(self, origin: str = "local") -> None:
        """Start (or continue) a local batch: edits to the roots join one pycrdt transaction
        until take_local(), so many small writes cost one commit. Any other method of this
        YDoc closes the batch first (its delta then waits for take_local())."""
        if self._open is None:
            self._close_local()
            self._captured.clear()
            self._open = self._doc.transaction(origin=origin)
            self._open.__enter__()

    def set_local(self, root: Map[Any], key: str, value: Any) -> None:
        """`root[key] = value` in the local batch (opened if needed), for a plain value (not a
        shared type): the hot path of a burst of sets, straight to yrs without pycrdt's
        per-call transaction handling."""
        txn = self._open
        if txn is None:
            self.open_local()
            txn = self._open
        root.integrated.insert(txn._txn, key, value)  # what Map.__setitem__ ends in

    def commit_local(self) -> None:
        """Commit the open local batch's pycrdt transaction (its delta still waits for
        take_local(); the next edit opens a new one)."""
        self._close_local()

    def take_local(self) -> bytes | None:
        """Close the local batch and return every local change it and earlier closed batches
        made, as one update (None if there is none)."""
        self._close_local()
        committed, self._committed = self._committed, []
        if not committed:
            return None
        return committed[0] if len(committed) == 1 else bytes(merge_updates(*committed))

    def _close_local(self) -> None:
        if self._open is None:
            return
        txn, self._open = self._open, None
        self.committing_local = True
        try:
            txn.__exit__(None, None, None)
        finally:
            self.committing_local = False
        updates, self._captured = self._captured, []
        self._committed.extend(updates)

    def _keep_unsent(self) -> None:
        self._unsent.extend(self._captured)
        self._captured.clear()

    def _log(self, update: bytes) -> None:
        """Remember an applied update for recovery (the checkpoint is re-encoded, dropping the
        log, at the next remote merge once the log outgrows it)."""
        self._logged.append(update)
        self._logged_bytes += len(update)

    def merge(self, other: YDoc | bytes | bytearray) -> None:
        """Apply a Yjs update (bytes) or a whole other YDoc; DecodeError on a bad update."""
        if isinstance(other, YDoc):
            update = other.full_update()
        elif isinstance(other, bytes | bytearray):
            update = bytes(other)
        else:
            raise TypeError(f"merge takes a YDoc or update bytes, got {type(other).__name__}")
        _check_count(update, "update")
        self._close_local()
        self._captured.clear()
        try:
            if self._integrable(update):
                self._settle(update)
                self._drain_pending()
            else:
                # held until its dependencies arrive (applied then, checked like any other);
                # refuse it now if it does not even apply alone
                _pycrdt(lambda: _rehearse(update), "update")
                self._pending.append(update)
        finally:
            self._captured.clear()

    def _integrable(self, update: bytes) -> bool:
        """Whether the doc already has what a one-client update builds on (its start clock).

        Updates that wait inside yrs for a dependency are not reliably integrated later
        (pycrdt 0.14), so such an update is held here until its turn.
        """
        start = _single_client_start(update)
        if start is None:
            return True
        client, clock = start
        return _decode_state(bytes(self._doc.get_state())).get(client, 0) >= clock

    def _settle(self, update: bytes) -> bool:
        """Apply an update; keep it pending (for re-application and resending) unless the
        document now covers everything in it. Return whether it was fully taken in."""
        self._apply(update)
        have = _decode_state(bytes(self._doc.get_state()))
        need = _decode_state(bytes(update_state(update)))
        taken = all(have.get(client, 0) >= clock for client, clock in need.items())
        if not taken and update not in self._pending:
            self._pending.append(update)
        return taken

    def _drain_pending(self) -> None:
        progress = True
        while progress and self._pending:
            progress = False
            for update in list(self._pending):
                if self._integrable(update):
                    self._pending.remove(update)
                    try:
                        progress = self._settle(update) or progress
                    except DecodeError:  # refused: it can never integrate
                        progress = True

    def _apply(self, update: bytes) -> None:
        """Apply a remote update to the replica; DecodeError (and the replica as it was) if yrs
        panics on it or what it integrated does not encode to bytes yrs can read back."""
        self._take_checkpoint()
        self._remote, self._applied = True, None
        try:
            with self._doc.transaction(origin=REMOTE_ORIGIN):
                self._doc.apply_update(update)
            applied = self._take_applied()
            if applied is not None:
                update_state(applied)
        except BaseException as exc:
            self._remote = False
            self._recover()
            if _is_interrupt(exc):
                raise
            raise DecodeError(f"ydoc update: {exc}") from None
        finally:
            self._remote, self._applied = False, None
        if applied is not None:
            self._log(applied)

    def _take_applied(self) -> bytes | None:
        """The encoding of the remote transaction just committed (None: it changed nothing)."""
        return self._applied

    def _take_checkpoint(self) -> None:
        """Encode the document afresh if there is no checkpoint or the log outgrew it."""
        checkpoint = self._checkpoint
        if checkpoint is not None and self._logged_bytes <= max(len(checkpoint), CHECKPOINT_FLOOR):
            return
        self._checkpoint = bytes(self._doc.get_update())
        self._logged, self._logged_bytes = [], 0

    def _recover(self) -> None:
        """After a refused update: keep the replica if it still equals the checkpoint and the
        log replayed, else replace its Doc by that replay."""
        assert self._checkpoint is not None
        rebuilt: Doc[Any] = Doc(client_id=self._doc.client_id)
        for update in [self._checkpoint, *self._logged]:
            rebuilt.apply_update(update)
        try:
            intact = _shape(self._doc) == _shape(rebuilt) and bool(self._doc.get_update())
        except BaseException as exc:
            if _is_interrupt(exc):
                raise
            intact = False
        if intact:
            return
        with contextlib.suppress(Exception):
            self._doc.unobserve(self._subscription)
        roots = {name: type(root) for name, root in self._doc._roots.items() if root is not None}
        self._doc = rebuilt
        for name, kind in roots.items():  # declared again, so value and roots are unchanged
            rebuilt.get(name, type=kind)
        self._subscription = rebuilt.observe(self._on_transaction)
        self._checkpoint, self._logged, self._logged_bytes = None, [], 0
        self.generation += 1

    def full_update(self) -> bytes:
        """The whole document as one update, updates still waiting for dependencies included."""
        self._close_local()
        state = _pycrdt(lambda: bytes(self._doc.get_update()), "document")
        return self._with_pending(state)

    def copy(self) -> YDoc:
        """An independent replica with the same content (a new Yjs client id)."""
        self._close_local()
        out = YDoc(self.replica)
        for update in [bytes(self._doc.get_update()), *self._pending, *self._unsent]:
            out.merge(update)
        return out

    def digest(self) -> bytes:
        """The Yjs state vector."""
        self._close_local()
        return bytes(self._doc.get_state())

    def clocks(self) -> dict[int, int]:
        """The state vector as {client: clock} (integrated content only, not what waits)."""
        return _decode_state(self.digest())

    def delta_since(self, digest: Any) -> bytes:
        """The update a replica with state vector `digest` lacks; DecodeError on a bad vector."""
        if not isinstance(digest, bytes | bytearray):
            raise DecodeError(f"ydoc digest: expected bytes, got {type(digest).__name__}")
        vector = bytes(digest)
        _check_count(vector, "state vector")
        self._close_local()
        delta = _pycrdt(lambda: bytes(self._doc.get_update(vector)), "state vector")
        return self._with_pending(delta)

    def _with_pending(self, update: bytes) -> bytes:
        """`update` merged with the updates still waiting for dependencies. A waiting update
        that yrs cannot merge with ours is corrupt and can never integrate: it is dropped."""
        extra = self._pending + self._unsent
        if not extra:
            return update
        merged = _merged_or_none(update, extra)
        if merged is not None:
            return merged
        kept = []
        for item in extra:
            if _merged_or_none(update, [item]) is not None:
                kept.append(item)
            elif item in self._pending:
                self._pending.remove(item)
            else:
                self._unsent.remove(item)
        return _merged_or_none(update, kept) or update

    def fingerprint(self) -> bytes:
        """A hash of the whole document. A Yjs document is determined by the structs it holds
        (its state vector) and its delete set, so those are hashed, normalized, with the
        updates still waiting: O(clients + deleted ranges), not O(document)."""
        self._close_local()
        vector = sorted(_decode_state(bytes(self._doc.get_state())).items())
        deleted = _delete_set(bytes(self._doc.get_update(self._doc.get_state())))
        if deleted is None:  # not the layout we expect: the re-encoding is canonical anyway
            return fingerprint_of(self._canonical())
        waiting = sorted({*self._pending, *self._unsent})
        return fingerprint_of([list(pair) for pair in vector], deleted, waiting)

    def _canonical(self) -> bytes:
        # Re-encoding through a fresh Doc squashes blocks the same way for equal content.
        fresh: Doc[Any] = Doc()
        fresh.apply_update(self.full_update())
        return bytes(fresh.get_update())

    def to_wire(self) -> WireValue:
        """`["ydoc", 1, replica, integrated update, [updates waiting for dependencies]]`."""
        self._close_local()
        pending = [*self._pending, *self._unsent]
        return [self.TAG, self.VERSION, self.replica, bytes(self._doc.get_update()), pending]

    @classmethod
    def from_wire(cls, obj: WireValue) -> YDoc:
        """Decode `to_wire` output; DecodeError on anything else."""
        _, _, replica, update, pending = expect_header(obj, cls.TAG, cls.VERSION, 5)
        replica = expect_str(replica, "ydoc replica")
        if not replica:
            raise DecodeError("ydoc: empty replica id")
        if not isinstance(pending, list | tuple):
            raise DecodeError("ydoc: pending updates must be a list")
        out = cls(replica)
        for item in [update, *pending]:
            if not isinstance(item, bytes | bytearray):
                raise DecodeError(f"ydoc: expected update bytes, got {type(item).__name__}")
            out.merge(bytes(item))
        return out

    def __eq__(self, other: object) -> bool:
        # not the encodings: yrs writes the fields of a JSON-like object in hash order
        return isinstance(other, YDoc) and self.fingerprint() == other.fingerprint()

    def __repr__(self) -> str:
        return f"YDoc({self.replica!r}, state={self.digest().hex()})"
