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

Positions: a mirror of the array (its keys and values in order) is kept in Python lists of
slots, with a Fenwick tree counting the live slots, so an entry's position costs O(log n).
Local edits update it directly; remote transactions update it from the array event's delta
(deletes and appends at the end in O(log n) each; an insert elsewhere rebuilds the mirror),
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


class _LiveCounts:
    """A Fenwick tree over slots holding 1 (live) or 0 (gone): positions in O(log n)."""

    __slots__ = ("_tree",)

    def __init__(self, size: int) -> None:
        tree = [1] * (size + 1)
        tree[0] = 0
        for i in range(1, size + 1):
            j = i + (i & -i)
            if j <= size:
                tree[j] += tree[i]
        self._tree = tree

    def append(self) -> None:
        """Add a live slot at the end."""
        tree = self._tree
        i = len(tree)
        total, j, low = 1, i - 1, i - (i & -i)
        while j > low:
            total += tree[j]
            j -= j & -j
        tree.append(total)

    def kill(self, slot: int) -> None:
        """Mark `slot` gone."""
        tree = self._tree
        i = slot + 1
        while i < len(tree):
            tree[i] -= 1
            i += i & -i

    def before(self, slot: int) -> int:
        """Live slots before `slot`: the array position of the entry in `slot`."""
        tree = self._tree
        total, i = 0, slot
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total

    def find(self, position: int) -> int:
        """The slot of the live entry at array `position`."""
        tree = self._tree
        size = len(tree) - 1
        slot, remaining = 0, position + 1
        step = 1 << size.bit_length()
        while step:
            nxt = slot + step
            if nxt <= size and tree[nxt] < remaining:
                slot = nxt
                remaining -= tree[nxt]
            step >>= 1
        return slot


COMPACT_AFTER = 1024
"""Gone slots the mirror keeps before it drops them (once they also outnumber the live)."""
_GONE = object()  # the key of a slot whose entry was deleted


class KeyValueArray:
    """A dict view over a Yjs Array of kv entries; writes must run inside a transaction of
    the array's Doc with origin LOCAL_ORIGIN (the owner's), on the Doc's thread."""

    def __init__(self, array: Array[Any], on_remote: Callable[[], None] | None = None) -> None:
        self._array = array
        self._on_remote = on_remote  # told after a peer's transaction changed the mirror
        self._count: dict[str, int] = {}  # entries per key
        self._value: dict[str, Any] = {}  # key -> value of its last entry
        self.duplicates: set[str] = set()
        """Keys with more than one entry (cleanup() deletes all but the last)."""
        self.changed: set[str] = set()
        """Keys set or deleted since the owner last cleared this set (cleanup() adds none)."""
        self.malformed = 0
        """Array items seen that are not kv entries (left in place, never read)."""
        entries = [_entry(item) for item in array.to_py() or []]
        self._rebuild([key for key, _ in entries], [value for _, value in entries])
        for key, value in entries:
            if key is None:
                self.malformed += 1
                continue
            count = self._count[key] = self._count.get(key, 0) + 1
            self._value[key] = value
            if count > 1:
                self.duplicates.add(key)
        # the raw yrs event: pycrdt's wrapper would convert the delta of every local
        # transaction too, which costs more than the sets themselves
        self._subscription = array.integrated.observe(self._on_event)

    def close(self) -> None:
        """Stop following the array."""
        try:
            self._subscription.drop()
        except Exception:  # the array went with a replaced document
            log.debug("kv layout: could not unobserve")

    # --- the mirror ---------------------------------------------------------------------

    def _rebuild(self, keys: list[Any], values: list[Any]) -> None:
        """Make the mirror the live entries `keys`/`values`, in array order."""
        self._keys: list[Any] = keys  # per slot: the entry's key (None: not an entry; _GONE)
        self._vals: list[Any] = values
        self._live = _LiveCounts(len(keys))
        self._gone = 0
        self._slot: dict[str, int] = {k: slot for slot, k in enumerate(keys) if type(k) is str}
        """key -> the slot of its last entry"""

    def _ordered(self) -> tuple[list[Any], list[Any]]:
        """The live entries' keys and values, in array order."""
        keys, vals = [], []
        for key, value in zip(self._keys, self._vals, strict=True):
            if key is not _GONE:
                keys.append(key)
                vals.append(value)
        return keys, vals

    def _kill(self, slot: int) -> None:
        self._live.kill(slot)
        self._keys[slot] = _GONE
        self._vals[slot] = None
        self._gone += 1

    def _compact_if_sparse(self) -> None:
        if self._gone > COMPACT_AFTER and self._gone > len(self._keys) - self._gone:
            self._rebuild(*self._ordered())

    def _append_slot(self, key: str | None, value: Any) -> int:
        slot = len(self._keys)
        self._keys.append(key)
        self._vals.append(value)
        self._live.append()
        return slot

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
        position = len(self._keys) - self._gone
        self._array.integrated.insert(txn, position, {KEY_FIELD: key, VALUE_FIELD: value})
        self._slot[key] = self._append_slot(key, value)
        self._count[key] = 1
        self._value[key] = value
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
        slots: dict[str, list[int]] = {}
        for slot, key in enumerate(self._keys):
            if key in keys:
                slots.setdefault(key, []).append(slot)
        doomed = [slot for found in slots.values() for slot in found[:-1]]
        self._delete_slots(doomed, self._transaction())
        for key, found in slots.items():
            self._count[key] = 1
            self._slot[key] = found[-1]
        self._compact_if_sparse()
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
            slots = [self._slot[key]]
        else:
            slots = [slot for slot, k in enumerate(self._keys) if k == key]
            self.duplicates.discard(key)
        self._delete_slots(slots, txn)
        del self._count[key]
        del self._value[key]
        del self._slot[key]
        self._compact_if_sparse()

    def _delete_slots(self, slots: list[int], txn: Any) -> None:
        array = self._array.integrated
        for slot in sorted(slots, reverse=True):
            array.remove_range(txn, self._live.before(slot), 1)
            self._kill(slot)

    # --- remote changes ----------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        if event.transaction.origin() == _LOCAL_HASH:
            return  # made through this object: the mirror has it
        count = self._count
        touched: set[str] = set()
        inserted: dict[str, tuple[int, Any]] = {}  # key -> (slot, value) of its last insert
        delta = list(event.delta)
        position = 0
        spliced = False
        for index, op in enumerate(delta):
            if "retain" in op:
                position += op["retain"]
            elif "delete" in op:
                slot = self._live.find(position)
                for _ in range(op["delete"]):
                    while self._keys[slot] is _GONE:
                        slot += 1
                    key = self._keys[slot]
                    if key is not None:
                        count[key] -= 1
                        touched.add(key)
                    self._kill(slot)
            elif position == len(self._keys) - self._gone:  # appended at the end
                for item in op["insert"]:
                    self._take_insert(item, self._append_slot, touched, inserted)
                position += len(op["insert"])
            else:
                self._splice(delta[index:], position, touched, inserted)
                spliced = True
                break
        self._settle(touched, {} if spliced else inserted)
        self._compact_if_sparse()
        if self._on_remote is not None:
            self._on_remote()
        self.changed |= touched

    def _take_insert(
        self,
        item: Any,
        place: Callable[[str | None, Any], int],
        touched: set[str],
        inserted: dict[str, tuple[int, Any]],
    ) -> None:
        key, value = _entry(item)
        slot = place(key, value)
        if key is None:
            self.malformed += 1
            log.warning("kv layout: an array item is not a kv entry: %.80r", item)
            return
        self._count[key] = self._count.get(key, 0) + 1
        touched.add(key)
        inserted[key] = (slot, value)

    def _splice(
        self,
        delta: list[Any],
        position: int,
        touched: set[str],
        inserted: dict[str, tuple[int, Any]],
    ) -> None:
        """Apply the rest of a delta that inserts before the end, on plain lists, and rebuild
        the mirror from them (the slots in `inserted` are stale afterwards)."""
        old_keys, old_vals = self._ordered()
        keys, vals = old_keys[:position], old_vals[:position]

        def place(key: str | None, value: Any) -> int:
            keys.append(key)
            vals.append(value)
            return len(keys) - 1

        for op in delta:
            if "retain" in op:
                end = position + op["retain"]
                keys.extend(old_keys[position:end])
                vals.extend(old_vals[position:end])
                position = end
            elif "delete" in op:
                end = position + op["delete"]
                for key in old_keys[position:end]:
                    if key is not None:
                        self._count[key] -= 1
                        touched.add(key)
                position = end
            else:
                for item in op["insert"]:
                    self._take_insert(item, place, touched, inserted)
        keys.extend(old_keys[position:])
        vals.extend(old_vals[position:])
        self._rebuild(keys, vals)

    def _settle(self, touched: set[str], inserted: dict[str, tuple[int, Any]]) -> None:
        """Decide the value of every key a remote change touched."""
        count = self._count
        rescan: set[str] = set()
        for key in touched:
            n = count[key]
            if n == 0:
                del count[key]
                self._value.pop(key, None)
                self._slot.pop(key, None)
                self.duplicates.discard(key)
            elif n == 1 and key in inserted:
                self._slot[key], self._value[key] = inserted[key]
                self.duplicates.discard(key)
            else:
                rescan.add(key)
                if n > 1:
                    self.duplicates.add(key)
                else:
                    self.duplicates.discard(key)
        if rescan:
            keys = self._keys
            for slot in range(len(keys) - 1, -1, -1):
                key = keys[slot]
                if key in rescan:
                    self._slot[key] = slot
                    self._value[key] = self._vals[slot]
                    rescan.discard(key)
                    if not rescan:
                        break
