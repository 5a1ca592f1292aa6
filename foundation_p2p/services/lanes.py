"""The "lanes" layout of a SharedState: each writer appends its keys to an Array of its own.

A Y.Map keeps one Yjs item per overwrite forever. The "kv" layout (one shared Array of
`{"key", "val"}` entries) stays small when one node writes, but entries of several writers
interleave: the deleted runs of different writers never squash, so the Array's struct count
grows with every batch, and yrs walks those structs from the start on every insert and
delete. Here every writer (a Yjs client id) appends only to its own root Array
`lane:<client id>`, so its deleted entries sit next to each other with consecutive clocks and
Yjs squashes them into one struct: a document whose keys are rewritten forever stays about
the size of its live entries, and each write walks only its own short lane.

A set deletes every entry of the key, in any lane, and appends the new one to the writer's
lane, in one transaction. Entries of one key in several lanes come only from concurrent sets:
the entry in the lane of the highest client id wins everywhere (as a Y.Map decides), and any
node that sees such duplicates deletes the others (`cleanup()`). Each lane is a
KeyValueArray, so its entries read like y-utility's `YKeyValue`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pycrdt import Array, Doc

from foundation_p2p.services.kvlayout import KeyValueArray

LANE_PREFIX = "lane:"


def open_lane(doc: Doc[Any], name: str, on_remote: Callable[[], None] | None) -> KeyValueArray:
    """The kv mirror of lane `name`, with every key it holds marked changed."""
    lane = KeyValueArray(doc.get(name, type=Array), on_remote=on_remote)
    lane.changed = {key for key, _ in lane.items()}
    return lane


def open_new_lanes(
    doc: Doc[Any],
    prefix: str,
    lanes: dict[str, KeyValueArray],
    on_remote: Callable[[], None] | None = None,
) -> None:
    """Add to `lanes` a mirror of every root named `prefix...` that a peer created."""
    for name in doc.keys():
        if name.startswith(prefix) and name not in lanes:
            lanes[name] = open_lane(doc, name, on_remote)


def lane_rank(name: str) -> tuple[int, str]:
    """The order of lanes when entries of one key conflict: by client id, then name."""
    tail = name[len(LANE_PREFIX) :]
    return (int(tail) if tail.isdigit() else -1, name)


class LaneKeyValues:
    """A dict view over the lanes of a Doc; writes go to the lane of `client_id` and must run
    inside a transaction of the Doc with the owner's origin, on the Doc's thread."""

    def __init__(self, doc: Doc[Any], client_id: int) -> None:
        self._doc = doc
        self._own = f"{LANE_PREFIX}{client_id}"
        self._lanes: dict[str, KeyValueArray] = {}
        self._holders: dict[str, list[str]] = {}  # key -> lanes with an entry, best first
        self._value: dict[str, Any] = {}  # key -> value of its winning entry
        self._stale = True  # a peer's transaction touched a lane, or may have added one
        self._changed: set[str] = set()
        self._contested: set[str] = set()  # keys with entries in more than one lane
        self._sync()
        self._changed.clear()  # what the document held already is no change

    # --- following the document ---------------------------------------------------------

    def touched(self) -> None:
        """The document took a peer's update: look for new lanes before the next read."""
        self._stale = True

    def _sync(self) -> None:
        """Open lanes a peer created and re-decide the keys peers changed."""
        if not self._stale:
            return
        self._stale = False
        open_new_lanes(self._doc, LANE_PREFIX, self._lanes, self.touched)
        for lane in self._lanes.values():
            if lane.changed:
                keys, lane.changed = lane.changed, set()
                for key in keys:
                    self._decide(key)
                self._changed |= keys

    def _decide(self, key: str) -> None:
        """Recompute which lanes hold `key` and its winning value."""
        holders = sorted(
            (name for name, lane in self._lanes.items() if key in lane), key=lane_rank, reverse=True
        )
        if not holders:
            self._holders.pop(key, None)
            self._value.pop(key, None)
            self._contested.discard(key)
            return
        self._holders[key] = holders
        self._value[key] = self._lanes[holders[0]].get(key)
        if len(holders) > 1:
            self._contested.add(key)
        else:
            self._contested.discard(key)

    @property
    def changed(self) -> set[str]:
        """Keys set or deleted since the owner last cleared this set (cleanup() adds none)."""
        self._sync()
        return self._changed

    @changed.setter
    def changed(self, keys: set[str]) -> None:
        self._changed = keys

    @property
    def duplicates(self) -> set[str]:
        """Keys with more than one entry, in one lane or across lanes."""
        self._sync()
        found = set(self._contested)
        for lane in self._lanes.values():
            found |= lane.duplicates
        return found

    @property
    def lanes(self) -> int:
        """How many lanes the document has."""
        self._sync()
        return len(self._lanes)

    def close(self) -> None:
        """Stop following the lanes."""
        for lane in self._lanes.values():
            lane.close()
        self._lanes.clear()

    # --- reads -------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The value of `key`'s winning entry, or `default`."""
        if self._stale:
            self._sync()
        return self._value.get(key, default)

    def __contains__(self, key: object) -> bool:
        if self._stale:
            self._sync()
        return key in self._value

    def __len__(self) -> int:
        if self._stale:
            self._sync()
        return len(self._value)

    def __iter__(self) -> Iterator[str]:
        if self._stale:
            self._sync()
        return iter(list(self._value))

    def items(self) -> list[tuple[str, Any]]:
        """(key, value) pairs."""
        if self._stale:
            self._sync()
        return list(self._value.items())

    # --- writes (inside the owner's transaction) ----------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        if self._stale:
            self._sync()
        own = self._lanes.get(self._own)
        if own is None:
            own = self._lanes[self._own] = open_lane(self._doc, self._own, self.touched)
        for name in self._holders.get(key, ()):
            if name != self._own:
                lane = self._lanes[name]
                lane.pop(key)
                lane.changed.discard(key)
        own[key] = value
        own.changed.discard(key)
        self._holders[key] = [self._own]
        self._value[key] = value
        self._contested.discard(key)
        self._changed.add(key)

    def pop(self, key: str, default: Any = None) -> Any:
        """Delete every entry of `key`; return its value, or `default` if it had none."""
        if self._stale:
            self._sync()
        if key not in self._value:
            return default
        value = self._value.pop(key)
        for name in self._holders.pop(key):
            lane = self._lanes[name]
            lane.pop(key)
            lane.changed.discard(key)
        self._contested.discard(key)
        self._changed.add(key)
        return value

    def cleanup(self) -> bool:
        """Delete every entry but the winning one of each duplicated key; True if any."""
        self._sync()
        deleted = False
        for lane in self._lanes.values():
            deleted = lane.cleanup() or deleted
        for key in list(self._contested):
            for name in self._holders[key][1:]:
                lane = self._lanes[name]
                lane.pop(key)
                lane.changed.discard(key)
                deleted = True
            self._holders[key] = self._holders[key][:1]
        self._contested.clear()
        return deleted


COUNTS_PREFIX = "counts:"


class LaneCounters:
    """The counters of a "lanes" state: each writer keeps its running total of every counter
    in a kv Array of its own, `counts:<client id>`; a counter is the sum over the lanes. A
    writer only ever rewrites its own entries, so they squash like the keys' lanes."""

    def __init__(self, doc: Doc[Any], client_id: int) -> None:
        self._doc = doc
        self._own = f"{COUNTS_PREFIX}{client_id}"
        self._lanes: dict[str, KeyValueArray] = {}
        self._known: frozenset[str] = frozenset()  # root names seen at the last discovery
        self._discover()
        for lane in self._lanes.values():
            lane.changed.clear()

    def _discover(self) -> None:
        roots = list(self._doc.keys())
        if len(roots) == len(self._known):
            return
        self._known = frozenset(roots)
        open_new_lanes(self._doc, COUNTS_PREFIX, self._lanes)

    def totals(self, counter: str) -> list[Any]:
        """Every writer's stored total of `counter` (as stored: the owner decodes them)."""
        self._discover()
        return [lane.get(counter) for lane in self._lanes.values() if counter in lane]

    def own_total(self, counter: str) -> Any:
        """This writer's stored total of `counter`, or None."""
        lane = self._lanes.get(self._own)
        return None if lane is None else lane.get(counter)

    def store(self, counter: str, total: Any) -> None:
        """Set this writer's total of `counter` (inside the owner's transaction)."""
        lane = self._lanes.get(self._own)
        if lane is None:
            lane = self._lanes[self._own] = open_lane(self._doc, self._own, None)
        lane[counter] = total

    def take_changed(self) -> set[str]:
        """Counters any writer changed since the last call."""
        self._discover()
        changed: set[str] = set()
        for lane in self._lanes.values():
            if lane.changed:
                changed |= lane.changed
                lane.changed = set()
        return changed

    def close(self) -> None:
        """Stop following the lanes."""
        for lane in self._lanes.values():
            lane.close()
        self._lanes.clear()
