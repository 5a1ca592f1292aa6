"""The "kv" layout of a SharedState: keys in a Yjs Array of `{"key": k, "val": v}` entries.

A Y.Map keeps one Yjs item per overwrite forever (a tombstone per old value), so a state whose
keys are rewritten in a cycle grows without bound. Here a set deletes the key's entry and
appends a new one in one transaction: the deleted entries one writer appended in sequence are
squashed by Yjs into one struct, so the document stays about the size of its live entries.
This is the layout of `YKeyValue` in the npm package `y-utility`, which a JavaScript client
uses to read and write it.

Concurrent sets of one key leave several entries; the LAST one in array order wins
everywhere, and any node that sees duplicates deletes the others (`cleanup()`, a local
write the owner replicates). A delete removes only the entries its writer saw, so a set
concurrent with a delete survives, as in a Y.Map.

Positions: a mirror of the array (its keys and values in order) is kept in Python lists.
Local edits update it directly; remote transactions update it from the array event's delta,
so nothing re-reads the whole array after the first load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from pycrdt import Array
from pycrdt._transaction import hash_origin

log = logging.getLogger("foundation_p2p.state")

KEY_FIELD = "key"
VALUE_FIELD = "val"
LOCAL_ORIGIN = "local"
"""The origin of the owner's transactions: their changes are already in the mirror."""
_LOCAL_HASH = hash_origin(LOCAL_ORIGIN)


def _entry(item: Any) -> tuple[str | None, Any]:
    """(key, value) of an array item; key None for an item that is not a kv entry."""
    if type(item) is dict and len(item) == 2:
        key = item.get(KEY_FIELD)
        if type(key) is str and VALUE_FIELD in item:
            return key, item[VALUE_FIELD]
    return None, None


class KeyValueArray:
    """A dict view over a Yjs Array of kv entries; writes must run inside a transaction of
    the array's Doc with origin LOCAL_ORIGIN (the owner's), on the Doc's thread."""

    def __init__(self, array: Array[Any], on_remote: Callable[[], None] | None = None) -> None:
        self._array = array
        self._on_remote = on_remote  # told after a peer's transaction changed the mirror
        self._keys: list[str | None] = []  # the array's entry keys in order (None: not an entry)
        self._vals: list[Any] = []
        self._count: dict[str, int] = {}  # entries per key
        self._value: dict[str, Any] = {}  # key -> value of its last entry
        self.duplicates: set[str] = set()
        """Keys with more than one entry (cleanup() deletes all but the last)."""
        self.changed: set[str] = set()
        """Keys set or deleted since the owner last cleared this set (cleanup() adds none)."""
        self.malformed = 0
        """Array items seen that are not kv entries (left in place, never read)."""
        for item in array.to_py() or []:
            self._append_mirror(*_entry(item))
        # the raw yrs event: pycrdt's wrapper would convert the delta of every local
        # transaction too, which costs more than the sets themselves
        self._subscription = array.integrated.observe(self._on_event)

    def close(self) -> None:
        """Stop following the array."""
        try:
            self._subscription.drop()
        except Exception:  # the array went with a replaced document
            log.debug("kv layout: could not unobserve")

    # --- reads -------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The value of `key`'s winning entry, or `default`."""
        return self._value.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._value

    def __len__(self) -> int:
        return len(self._value)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._value))

    def items(self) -> list[tuple[str, Any]]:
        """(key, value) pairs."""
        return list(self._value.items())

    # --- writes (inside the owner's transaction) ----------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        txn = self._transaction()
        self._remove_entries(key, txn)
        self._array.integrated.insert(txn, len(self._keys), {KEY_FIELD: key, VALUE_FIELD: value})
        self._append_mirror(key, value)
        self.changed.add(key)

    def pop(self, key: str, default: Any = None) -> Any:
        """Delete every entry of `key`; return its value, or `default` if it had none."""
        if key not in self._value:
            return default
        value = self._value[key]
        self._remove_entries(key, self._transaction())
        self.changed.add(key)
        return value

    def cleanup(self) -> bool:
        """Delete all but the last entry of each duplicated key; True if it deleted any."""
        if not self.duplicates:
            return False
        keys = self.duplicates
        self.duplicates = set()
        last: dict[str, int] = {}
        for position, key in enumerate(self._keys):
            if key in keys:
                last[key] = position
        doomed = [p for p, key in enumerate(self._keys) if key in keys and last[key] != p]
        self._delete_positions(doomed, self._transaction())
        for key in keys:
            self._count[key] = 1
        return bool(doomed)

    def _transaction(self) -> Any:
        """The raw yrs transaction of the open pycrdt transaction (the owner opened it)."""
        txn = self._array.doc._txn
        if txn is None:
            raise RuntimeError("kv layout: write outside a transaction of the document")
        return txn._txn

    def _remove_entries(self, key: str, txn: Any) -> None:
        count = self._count.get(key, 0)
        if count == 0:
            return
        if count == 1:
            positions = [self._keys.index(key)]
        else:
            positions = [p for p, k in enumerate(self._keys) if k == key]
            self.duplicates.discard(key)
        self._delete_positions(positions, txn)
        del self._count[key]
        del self._value[key]

    def _delete_positions(self, positions: list[int], txn: Any) -> None:
        array, keys, vals = self._array.integrated, self._keys, self._vals
        for position in reversed(positions):
            array.remove_range(txn, position, 1)
            del keys[position]
            del vals[position]

    def _append_mirror(self, key: str | None, value: Any) -> None:
        self._keys.append(key)
        self._vals.append(value)
        if key is None:
            self.malformed += 1
            return
        count = self._count.get(key, 0) + 1
        self._count[key] = count
        self._value[key] = value
        if count > 1:
            self.duplicates.add(key)

    # --- remote changes ----------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        if event.transaction.origin() == _LOCAL_HASH:
            return  # made through this object: the mirror has it
        keys, vals, count = self._keys, self._vals, self._count
        new_keys: list[str | None] = []
        new_vals: list[Any] = []
        touched: set[str] = set()
        inserted: dict[str, Any] = {}
        position = 0
        for op in event.delta:
            if "retain" in op:
                end = position + op["retain"]
                new_keys += keys[position:end]
                new_vals += vals[position:end]
                position = end
            elif "delete" in op:
                end = position + op["delete"]
                for key in keys[position:end]:
                    if key is not None:
                        count[key] -= 1
                        touched.add(key)
                position = end
            else:
                for item in op["insert"]:
                    key, value = _entry(item)
                    new_keys.append(key)
                    new_vals.append(value)
                    if key is None:
                        self.malformed += 1
                        log.warning("kv layout: an array item is not a kv entry: %.80r", item)
                        continue
                    count[key] = count.get(key, 0) + 1
                    touched.add(key)
                    inserted[key] = value
        new_keys += keys[position:]
        new_vals += vals[position:]
        self._keys, self._vals = new_keys, new_vals
        if self._on_remote is not None:
            self._on_remote()
        rescan: set[str] = set()
        for key in touched:
            n = count[key]
            if n == 0:
                del count[key]
                self._value.pop(key, None)
                self.duplicates.discard(key)
            elif n == 1 and key in inserted:
                self._value[key] = inserted[key]
                self.duplicates.discard(key)
            else:
                rescan.add(key)
                if n > 1:
                    self.duplicates.add(key)
                else:
                    self.duplicates.discard(key)
        if rescan:
            for position in range(len(new_keys) - 1, -1, -1):
                key = new_keys[position]
                if key in rescan:
                    self._value[key] = new_vals[position]
                    rescan.discard(key)
                    if not rescan:
                        break
        self.changed |= touched
