"""SharedState: the application's replicated key-value state, one Yjs document per name.

`SharedState("line-3")["temperature"] = 21.5` writes locally at once and replicates in the
background. The document behind it is the engine replica `state/<name>` (a `crdts.YDoc`):

- root Map `data`: the user's keys; each value is stored as the plain Yjs value a JavaScript
  client reads (services/values.py tags only what JS cannot carry exactly), so a value reads
  back exactly as written (an int stays an int, bytes stay bytes, nested containers are kept)
  and is replaced as a whole (last writer wins per key, as Yjs decides);
- root Map `counter:<name>`: one entry per writer session, that session's net total; the
  counter is their sum, so concurrent increments never conflict;
- root Text `text:<name>` and root Array `list:<name>` (list items use the same codec).

With `layout="kv"` the user's keys live instead in the root Array `kv` as `{"key", "val"}`
entries (services/kvlayout.py), so a key one node rewrites many times does not grow the
document; with `layout="lanes"` each writer appends its entries to a root Array of its own,
`lane:<client id>` (services/lanes.py), so that holds for any number of writers.

Every pycrdt call runs on the owner's thread (the node's event loop, or the simulator).
The synchronous methods hop there from application threads; the async ones
(`synced`, `set`, `wait_for`) may be awaited on any event loop. Write levels count the
acknowledgements the engine reports as `WritesAcked` events.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pycrdt import Array, Map, Text, merge_updates

from crdts import YDoc
from crdts.ydoc import EMPTY_UPDATE
from foundation_p2p.config import Config
from foundation_p2p.engine import Event, ReplicaChanged
from foundation_p2p.engine.events import WritesAcked
from foundation_p2p.services.kvlayout import KeyValueArray
from foundation_p2p.services.lanes import LANE_PREFIX, LaneCounters, LaneKeyValues
from foundation_p2p.services.values import decode_value as decode_value
from foundation_p2p.services.values import encode_value as encode_value

if TYPE_CHECKING:
    from foundation_p2p.engine import Engine

log = logging.getLogger("foundation_p2p.state")

T = TypeVar("T")
STATE_PREFIX = "state/"
DATA_ROOT = "data"
KV_ROOT = "kv"
LAYOUTS = ("map", "kv", "lanes")
"""Where a state keeps its keys: the root Map `data` (the default), the root Array `kv`, or
one root Array `lane:<client id>` per writer."""
COUNTER_PREFIX = "counter:"
TEXT_PREFIX = "text:"
LIST_PREFIX = "list:"
WRITE_LEVELS = ("local", "majority", "all")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_DEPTH = 64
MAX_NAME_CHARS = 200
_ACK_RANGES_PER_PEER = 64
REWRITE_HINT_SETS = 100_000
"""Sets of a map-layout state between checks whether they outnumber its keys 20 times; the
first time they do, a log line and the `state.rewrite_hint` counter suggest the lanes layout
(Yjs keeps a record of every overwritten map entry, so such a document keeps growing)."""
ENTRIES_PER_COMMIT = 256
"""Array entries one pycrdt transaction appends at most: yrs's cost for appends in one
transaction grows with their square (kv and lanes layouts commit a long batch in parts; it
still replicates as one delta)."""
_MISSING = object()


class ConsistencyTimeout(TimeoutError):
    """Not enough members acknowledged in time. The write stays applied locally and still
    replicates; only the confirmation is missing."""

    def __init__(self, message: str, acked: frozenset[str] = frozenset(), needed: int = 0):
        super().__init__(message)
        self.acked = acked
        """The peers that had acknowledged when the time ran out."""
        self.needed = needed
        """How many members (this node included) the level asked for."""


# --- keys (the value codec is foundation_p2p.services.values) ----------------------------


def check_key(key: Any) -> str:
    """A SharedState key: a str that UTF-8 can encode (TypeError/ValueError otherwise)."""
    if type(key) is not str:
        raise TypeError(f"SharedState keys are str, got {type(key).__name__}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"key {key!r} is not valid UTF-8: {exc}") from None
    return key


def _check_name(name: Any, what: str) -> str:
    check_key(name)
    if not name or len(name) > MAX_NAME_CHARS:
        raise ValueError(f"{what} name must be 1-{MAX_NAME_CHARS} characters, got {name!r}")
    return str(name)


# --- what a SharedState needs from its node ----------------------------------------------


class Waiter(Protocol):
    """A one-shot wake-up with a deadline, made by the host."""

    def wake(self) -> None:
        """Resolve the wait (idempotent)."""

    def wait(self) -> Awaitable[bool]:
        """True once woken, False when the deadline passes first."""


class StateHost(Protocol):
    """The node a SharedState lives on: the asyncio Node or a simulated node."""

    @property
    def config(self) -> Config:
        """The node's config (max_value_bytes)."""

    def engine(self) -> Engine:
        """The running engine (raises if the node is not running)."""

    def on_owner(self) -> bool:
        """Whether the caller runs on the owner's thread."""

    def call(self, function: Callable[[], T]) -> T:
        """Run `function` on the owner's thread and return its result."""

    def run(self, coroutine: Awaitable[T]) -> Awaitable[T]:
        """Await `coroutine` on the owner's event loop, from whatever loop awaits this."""

    def writable(self) -> None:
        """Raise if the node cannot take a local write now."""

    def write(self, replica: str, delta: bytes) -> int:
        """Hand a local delta to the engine; return its write number."""

    def subscribe(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """Call `listener` with every engine event; return an unsubscribe function."""

    def waiter(self, timeout: float) -> Waiter:
        """A waiter that gives up after `timeout` seconds of the owner's clock."""

    def soon(self, callback: Callable[[], None]) -> bool:
        """Run `callback` once the current burst of work is done (False: cannot defer)."""

    def flush_durable(self) -> Awaitable[None]:
        """Return once every local write so far is on disk (raise if there is no disk)."""


# --- changes and subscriptions -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """What one local write or one remote merge changed. origin: "local" or the peer's id."""

    keys: frozenset[str]
    origin: str
    counters: frozenset[str] = frozenset()
    texts: frozenset[str] = frozenset()
    lists: frozenset[str] = frozenset()


class Subscription:
    """An observer registration; close() stops the callbacks."""

    __slots__ = ("_close", "closed")

    def __init__(self, close: Callable[[], None]) -> None:
        self._close = close
        self.closed = False

    def close(self) -> None:
        """Stop calling the observer (idempotent)."""
        if not self.closed:
            self.closed = True
            self._close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(slots=True)
class _Transaction:
    """Writes buffered by `with s.transaction():`, applied as one delta when the block ends."""

    overlay: dict[str, Any] = field(default_factory=dict)  # _MISSING: deleted
    """The data map's keys as the block left them (replayed from here: no closure per set)."""
    operations: list[Callable[[SharedState], None]] = field(default_factory=list)
    """Changes to the other roots (counters, texts, lists), in order."""


# --- SharedState -------------------------------------------------------------------------


_resolve_default: Callable[[], Any] | None = None


def set_default_node(resolver: Callable[[], Any]) -> None:
    """Install the function that gives `SharedState(name)` its node (foundation_p2p.app)."""
    global _resolve_default
    _resolve_default = resolver


class _ResolvingType(type):
    """`SharedState(name, node=None, layout=None)` returns `node.shared_state(name, layout)`:
    one object per name and node, the default node when none is given."""

    def __call__(cls, name: str, node: Any = None, layout: str | None = None) -> Any:
        if node is None:
            if _resolve_default is None:
                raise RuntimeError(
                    "no default node: import foundation_p2p (or pass node=) to use SharedState"
                )
            node = _resolve_default()
        return node.shared_state(name) if layout is None else node.shared_state(name, layout)


def with_layout(state: SharedState, layout: str | None) -> SharedState:
    """`state`, held to `layout` if one is given (the nodes' shared_state(name, layout=))."""
    if layout is not None:
        state._choose_layout(layout)
    return state


class SharedState(metaclass=_ResolvingType):
    """A named replicated dict: reads are local, writes apply at once and replicate."""

    name: str
    replica_name: str
    _host: StateHost
    _engine: Engine | None
    _ydoc: YDoc | None
    _generation: int  # the YDoc's generation _data and the watchers belong to
    _data: Map[Any] | KeyValueArray | LaneKeyValues | None
    _unsubscribe: Callable[[], None] | None
    _observers: list[Callable[[Change], object]]
    _watched: dict[str, Any]  # root name -> pycrdt subscription
    _changed: dict[str, set[str]]  # what pycrdt observers saw since the last engine event
    _acked: dict[str, list[list[int]]]  # peer -> sorted [first, last] write-number ranges
    _first_write: int
    _last_write: int
    _waiters: list[tuple[Callable[[], bool], Waiter]]
    _txn: contextvars.ContextVar[_Transaction | None]
    _batch_open: bool  # plain sets are gathering in one pycrdt transaction until _flush_batch
    _batch_entries: int  # kv or lanes entries the open pycrdt transaction of the batch appended
    _sets: int  # keys set through this object (for the rewrite hint)
    _rewrite_check: int  # _sets at which _check_rewrites runs next
    layout: str
    """One of LAYOUTS; fixed once the state is used or a layout was asked for."""
    _layout_fixed: bool
    _layout_asked: bool  # the application named a layout (else a document's own is taken)
    _kv: KeyValueArray | LaneKeyValues | None  # the keys, except in the "map" layout
    _counts: LaneCounters | None  # the counters in the "lanes" layout

    @classmethod
    def _create(cls, name: str, host: StateHost) -> SharedState:
        """The SharedState `name` on `host` (nodes call this once per name)."""
        self: SharedState = object.__new__(cls)
        self.name = _check_name(name, "SharedState")
        self.replica_name = STATE_PREFIX + name
        self._host = host
        self._engine = None
        self._ydoc = None
        self._generation = 0
        self._data = None
        self._unsubscribe = None
        self._observers = []
        self._watched = {}
        self._changed = {}
        self._acked = {}
        self._first_write = 0
        self._last_write = 0
        self._waiters = []
        self._batch_open = False
        self._batch_entries = 0
        self._sets = 0
        self._rewrite_check = REWRITE_HINT_SETS
        self.layout = "map"
        self._layout_fixed = False
        self._layout_asked = False
        self._kv = None
        self._counts = None
        self._txn = contextvars.ContextVar(f"shared-state-transaction-{name}", default=None)
        return self

    # --- reads ----------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """The value at `key`, or `default`."""
        check_key(key)
        txn = self._txn.get()
        if txn is not None and key in txn.overlay:
            blob = txn.overlay[key]
            return default if blob is _MISSING else decode_value(blob)
        blob = self._host.call(lambda: self._bound_data().get(key, _MISSING))
        return default if blob is _MISSING else decode_value(blob)

    def to_dict(self) -> dict[str, Any]:
        """Every key and value, as plain Python values."""
        blobs = self._host.call(lambda: dict(self._bound_data().items()))
        txn = self._txn.get()
        if txn is not None:
            for key, blob in txn.overlay.items():
                if blob is _MISSING:
                    blobs.pop(key, None)
                else:
                    blobs[key] = blob
        return {key: decode_value(blob) for key, blob in blobs.items()}

    def keys(self) -> list[str]:
        """The keys, in no particular order."""
        return list(self.to_dict())

    def items(self) -> list[tuple[str, Any]]:
        """(key, value) pairs."""
        return list(self.to_dict().items())

    def values(self) -> list[Any]:
        """The values."""
        return list(self.to_dict().values())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        if self._txn.get() is not None:
            return len(self.to_dict())
        return int(self._host.call(lambda: len(self._bound_data())))

    def __contains__(self, key: object) -> bool:
        return type(key) is str and self.get(key, _MISSING) is not _MISSING

    # --- writes ---------------------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        blob = self._encode(key, value)
        txn = self._txn.get()
        if txn is not None:
            txn.overlay[key] = blob
            return
        self._sets += 1
        ydoc = self._ydoc
        if (  # the hot path: a burst of sets
            self._batch_open
            and ydoc is not None
            and ydoc.generation == self._generation
            and self._host.on_owner()
        ):
            if self._kv is None:
                ydoc.set_local(self._data, key, blob)  # type: ignore[arg-type]
            else:
                self._kv_set_local(ydoc, key, blob)
            if self._observers:
                self._report_set(key)
            return
        self._host.call(lambda: self._set_now(key, blob))

    def __delitem__(self, key: str) -> None:
        check_key(key)
        txn = self._txn.get()
        if txn is not None:
            if key not in self:
                raise KeyError(key)
            txn.overlay[key] = _MISSING
            return

        def delete() -> None:
            if key not in self._bound_data():
                raise KeyError(key)
            self._write(lambda: self._data_map().pop(key))

        self._host.call(delete)

    def update(self, values: dict[str, Any]) -> None:
        """Set several keys in one delta."""
        with self.transaction():
            for key, value in values.items():
                self[key] = value

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Remove `key` and return its value (or `default` if it is missing)."""
        value = self.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        del self[key]
        return value

    @contextmanager
    def transaction(self) -> Iterator[SharedState]:
        """`with s.transaction():` — the writes of the block replicate as one delta, and
        none of them is applied if the block raises. Reads of keys inside the block see its
        own writes; counters, texts and lists show their state from before the block."""
        if self._txn.get() is not None:  # nested: part of the outer one
            yield self
            return
        txn = _Transaction()
        token = self._txn.set(txn)
        try:
            yield self
        finally:
            self._txn.reset(token)
        if txn.operations or txn.overlay:
            self._sets += len(txn.overlay)
            self._host.call(lambda: self._write(*self._replay(txn)))

    def _replay(self, txn: _Transaction) -> list[Callable[[], object]]:
        """The block's writes as steps for _write (keys in parts of ENTRIES_PER_COMMIT, except
        in the map layout)."""
        overlay = iter(txn.overlay.items())  # independent of the other roots: order is moot
        count = len(txn.overlay)
        size = ENTRIES_PER_COMMIT if self.layout != "map" else max(1, count)

        def keys() -> None:
            data = self._data_map()
            for key, blob in itertools.islice(overlay, size):
                if blob is _MISSING:
                    data.pop(key, None)
                else:
                    data[key] = blob

        def operations() -> None:
            for operation in txn.operations:
                operation(self)

        steps: list[Callable[[], object]] = [keys] * -(-count // size)
        return [*steps, operations] if txn.operations else steps

    async def set(
        self,
        key: str,
        value: Any,
        write: str = "local",
        timeout: float = 2.0,
        durable: bool = False,
    ) -> None:
        """Set `key` and wait for the write level: "local" returns at once, "majority" when
        more than half the members (this node included; left members excluded, dead ones
        counted) hold the write, "all" when every member does. ConsistencyTimeout after
        `timeout` seconds — the write stays applied and still replicates. durable=True also
        waits until the write is on this node's disk."""
        if write not in WRITE_LEVELS:
            raise ValueError(f"write must be one of {', '.join(WRITE_LEVELS)}; got {write!r}")
        if self._txn.get() is not None:
            raise RuntimeError("await s.set() inside s.transaction(): use s[key] = value there")
        blob = self._encode(key, value)
        await self._host.run(self._set_on_owner(key, blob, write, timeout, durable))

    async def _set_on_owner(
        self, key: str, blob: bytes, write: str, timeout: float, durable: bool
    ) -> None:
        seq = self._write(lambda: self._data_map().__setitem__(key, blob))
        if durable:
            await self._host.flush_durable()
        if write != "local":
            await self._wait_for_level(seq, seq, write, timeout, f"write of {key!r}")

    async def synced(self, timeout: float = 2.0) -> None:
        """Return once every live peer holds every write this node made to this state;
        ConsistencyTimeout otherwise (the writes still replicate)."""
        await self._host.run(self._synced_on_owner(timeout))

    async def _synced_on_owner(self, timeout: float) -> None:
        self._bind()
        self._flush_batch()
        if self._last_write:
            await self._wait_for_level(
                self._first_write, self._last_write, "live", timeout, "writes so far"
            )

    async def wait_for(self, predicate: Callable[[SharedState], T], timeout: float = 5.0) -> T:
        """Return `predicate(self)` once it is truthy, re-checked after every change;
        TimeoutError after `timeout` seconds."""
        return await self._host.run(self._wait_for_on_owner(predicate, timeout))

    async def _wait_for_on_owner(self, predicate: Callable[[SharedState], T], timeout: float) -> T:
        self._bind()
        result: list[T] = []

        def ready() -> bool:
            value = predicate(self)
            if value:
                result[:] = [value]
            return bool(value)

        if not await self._wait(ready, timeout):
            raise TimeoutError(f"{self.name}: condition not met within {timeout} s")
        return result[0]

    # --- counters, texts, lists -----------------------------------------------------------

    def counter(self, name: str) -> SharedCounter:
        """The conflict-free counter `name` inside this state."""
        return SharedCounter(self, _check_name(name, "counter"))

    def text(self, name: str) -> SharedText:
        """The collaborative text `name` inside this state."""
        return SharedText(self, _check_name(name, "text"))

    def list(self, name: str) -> SharedList:
        """The replicated sequence `name` inside this state."""
        return SharedList(self, _check_name(name, "list"))

    # --- observers ------------------------------------------------------------------------

    def observe(self, callback: Callable[[Change], object]) -> Subscription:
        """Call `callback(change)` once per local write and once per remote merge that changed
        this state, on the node's thread; close the returned Subscription to stop."""

        def add() -> None:
            self._bind()
            self._flush_batch()
            self._observers.append(callback)
            self._watch_roots()

        def remove() -> None:
            if callback in self._observers:
                self._observers.remove(callback)
            if not self._observers:
                self._unwatch_roots()

        self._host.call(add)
        return Subscription(lambda: self._host.call(remove))

    # --- sizes ----------------------------------------------------------------------------

    def size_bytes(self) -> int:
        """The size of the whole document as one Yjs update (what a new peer downloads)."""
        return int(self._host.call(lambda: len(self._bound_ydoc().full_update())))

    def __repr__(self) -> str:
        return f"SharedState({self.name!r})"

    # --- internals (owner thread) ---------------------------------------------------------

    def _encode(self, key: str, value: Any) -> Any:
        check_key(key)
        return encode_value(value, self._host.config.max_value_bytes)

    def _bind(self) -> YDoc:
        """The YDoc of the running engine (re-bound when the node restarted)."""
        engine = self._host.engine()
        ydoc = self._ydoc
        if ydoc is not None and engine is self._engine and ydoc.generation != self._generation:
            # the YDoc rebuilt its pycrdt Doc after a refused update: same replica, new roots
            self._unwatch_roots()
            self._data = self._open_keys(ydoc)
            self._generation = ydoc.generation
            if self._observers:
                self._watch_roots()
        if engine is not self._engine or ydoc is None:
            ydoc = engine.replica(self.replica_name, YDoc)
            data = self._open_keys(ydoc)  # first: it refuses a document of the other layout
            self._batch_open = False  # a batch of the previous engine's document goes with it
            self._unwatch_roots()
            if self._unsubscribe is not None:
                self._unsubscribe()
            self._data = data
            self._ydoc = ydoc
            self._generation = self._ydoc.generation
            self._engine = engine
            self._acked.clear()
            self._first_write = self._last_write = 0
            self._unsubscribe = self._host.subscribe(self._on_event)
            if self._observers:
                self._watch_roots()
        assert self._ydoc is not None
        return self._ydoc

    def _bound_ydoc(self) -> YDoc:
        return self._bind()

    # --- the "kv" and "lanes" layouts

    def _choose_layout(self, layout: str) -> None:
        """Use `layout` for this state; ValueError if it is not one of LAYOUTS or the state
        already uses the other one."""
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
        if layout != self.layout and self._layout_fixed:
            raise ValueError(
                f"SharedState {self.name!r} uses the {self.layout!r} layout, not {layout!r}: "
                "the layout of a state is fixed"
            )
        self.layout = layout
        self._layout_fixed = self._layout_asked = True

    def _open_keys(self, ydoc: YDoc) -> Any:
        """The root holding the user's keys in this state's layout (the Map, a
        KeyValueArray or the lanes). A state opened without a layout takes the one its
        document has; ValueError if the document holds another layout than the one asked."""
        found = _layouts_in(ydoc)
        if len(found) == 1 and not self._layout_asked:
            self.layout = found[0]
        if found and self.layout not in found:
            other = found[0]
            self._layout_fixed = False  # the application may open it with the right one
            raise ValueError(
                f"SharedState {self.name!r}: its document has the {other!r} layout, "
                f"opened with the {self.layout!r} layout"
            )
        self._layout_fixed = True
        if self._kv is not None:
            self._kv.close()
            self._kv = None
        if self._counts is not None:
            self._counts.close()
            self._counts = None
        if self.layout == "map":
            return ydoc.get(DATA_ROOT, Map)
        if self.layout == "lanes":
            self._kv = LaneKeyValues(ydoc.doc, ydoc.doc.client_id)
            self._counts = LaneCounters(ydoc.doc, ydoc.doc.client_id)
            return self._kv
        # duplicates loaded with the document are cleaned after the next merge; reads
        # already see the last entry
        self._kv = KeyValueArray(ydoc.get(KV_ROOT, Array))
        return self._kv

    def _kv_set_local(self, ydoc: YDoc, key: str, blob: Any) -> None:
        """A batched set in the kv or lanes layout (reported by _report_set, not by the
        change set)."""
        assert self._kv is not None
        ydoc.open_local()
        self._kv[key] = blob
        self._kv.changed.discard(key)
        self._batch_entries += 1
        if self._batch_entries >= ENTRIES_PER_COMMIT:
            self._batch_entries = 0
            ydoc.commit_local()

    def _schedule_cleanup(self) -> None:
        if not self._host.soon(self._clean_duplicates):
            self._clean_duplicates()

    def _clean_duplicates(self) -> None:
        """Delete the losing entries of concurrently set keys, as a local write."""
        kv = self._kv
        if kv is None or not kv.duplicates:
            return
        try:
            self._write(kv.cleanup)
        except Exception:  # e.g. the node is stopping: the next merge or bind retries
            log.exception("SharedState %r: duplicate entries not cleaned", self.name)

    def _bound_data(self) -> Map[Any] | KeyValueArray | LaneKeyValues:
        self._bind()
        assert self._data is not None
        return self._data

    def _data_map(self) -> Map[Any] | KeyValueArray | LaneKeyValues:
        assert self._data is not None
        return self._data

    def _root(self, name: str, kind: type[T]) -> T:
        return self._bind().get(name, kind)

    def _set_now(self, key: str, blob: bytes) -> None:
        """A plain `s[key] = value`: batched with the other sets of this loop turn into one
        transaction and one delta; observers still see each set as its own change, at once."""
        self._host.writable()
        ydoc = self._bind()
        if not self._batch_open:
            if not self._host.soon(self._flush_batch):
                self._write(lambda: self._data_map().__setitem__(key, blob))
                return
            self._batch_open = True
            self._batch_entries = 0
        if self._kv is None:
            # reopens the batch if a merge closed it
            ydoc.set_local(self._data_map(), key, blob)  # type: ignore[arg-type]
        else:
            self._kv_set_local(ydoc, key, blob)
        if self._observers:
            self._report_set(key)

    def _flush_batch(self) -> None:
        """Hand the batched sets to the engine as one local write."""
        if not self._batch_open:
            return
        self._batch_open = False
        ydoc = self._ydoc
        delta = ydoc.take_local() if ydoc is not None else None
        if delta is None:
            return
        try:
            seq = self._host.write(self.replica_name, delta)
        except Exception:  # e.g. the node stopped since: the sets stay applied here
            log.exception("SharedState %r: batched writes not replicated", self.name)
            return
        self._wrote(seq)

    def _wrote(self, seq: int) -> None:
        """Remember local write `seq` (for write levels), and check the rewrite hint when due."""
        if not self._first_write:
            self._first_write = seq
        self._last_write = seq
        if self._sets >= self._rewrite_check:
            self._check_rewrites()

    def _check_rewrites(self) -> None:
        """Suggest the lanes layout, once, to a map-layout state whose sets outnumber its keys
        20 times."""
        self._rewrite_check = self._sets + REWRITE_HINT_SETS
        if self.layout != "map" or self._data is None:
            return
        keys = len(self._data)
        if self._sets < 20 * max(keys, 1):
            return
        self._rewrite_check = 2**62  # once per state
        self._host.engine().counters["state.rewrite_hint"] += 1
        log.warning(
            "SharedState %r: %d sets over %d keys in the map layout; Yjs keeps about 190 bytes "
            "per overwritten map entry, so this document grows with every rewrite. For keys "
            'rewritten forever, open it with layout="lanes" on every node '
            "(docs/guides/shared-state.md, Layouts).",
            self.name,
            self._sets,
            keys,
        )

    def _write(self, *changes: Callable[[], object]) -> int:
        """Apply the changes, one pycrdt transaction each, and replicate them as one delta;
        return its number."""
        self._flush_batch()
        self._host.writable()
        ydoc = self._bind()
        deltas: list[bytes] = []
        for change in changes:
            with ydoc.transaction() as result:
                change()
            if result.delta != EMPTY_UPDATE or not deltas:
                deltas.append(result.delta)
        # merging decodes every struct: a large delta costs its size several times over
        delta = deltas[0] if len(deltas) == 1 else bytes(merge_updates(*deltas))
        seq = self._host.write(self.replica_name, delta)
        self._wrote(seq)
        return seq

    def apply_client_update(self, update: bytes) -> None:
        """Merge a Yjs update made by a client of this node (a browser over y-websocket) and
        replicate it as a local write of this node; crdts.DecodeError if it is malformed, and
        nothing is applied."""

        def apply() -> None:
            self._flush_batch()
            self._host.writable()
            self._bind().merge(update)
            self._wrote(self._host.write(self.replica_name, update))

        self._host.call(apply)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, ReplicaChanged):
            if event.name == self.replica_name:
                if isinstance(self._kv, LaneKeyValues):
                    self._kv.touched()
                self._report_change(event.origin)
                if self._kv is not None and self._kv.duplicates:
                    self._schedule_cleanup()
        elif isinstance(event, WritesAcked):
            if event.name == self.replica_name:
                self._record_ack(event.node, event.first, event.last)
        if self._waiters:
            for ready, waiter in list(self._waiters):
                if ready():
                    waiter.wake()

    # --- acknowledgements

    def _record_ack(self, peer: str, first: int, last: int) -> None:
        ranges = self._acked.setdefault(peer, [])
        ranges.append([first, last])
        ranges.sort()
        merged: list[list[int]] = []
        for lo, hi in ranges:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self._acked[peer] = merged[-_ACK_RANGES_PER_PEER:]

    def _holds(self, peer: str, first: int, last: int) -> bool:
        return any(lo <= first and last <= hi for lo, hi in self._acked.get(peer, ()))

    def _level_state(self, first: int, last: int, level: str) -> tuple[bool, frozenset[str], int]:
        """(met, peers holding writes first..last, members needed, this node included)."""
        engine = self._host.engine()
        me = engine.node_id
        members = engine.members()
        if level == "live":
            peers = [m for m, status in members.items() if status == "alive" and m != me]
            needed = len(peers) + 1
        else:
            peers = [m for m, status in members.items() if status != "left" and m != me]
            needed = len(peers) + 1 if level == "all" else (len(peers) + 1) // 2 + 1
        holding = frozenset(p for p in peers if self._holds(p, first, last))
        return len(holding) + 1 >= needed, holding, needed

    async def _wait_for_level(
        self, first: int, last: int, level: str, timeout: float, what: str
    ) -> None:
        engine = self._host.engine()
        if not await self._wait(lambda: self._level_state(first, last, level)[0], timeout):
            if engine is not self._host.engine():
                raise ConsistencyTimeout(f"{self.name}: the node restarted during the wait")
            _, holding, needed = self._level_state(first, last, level)
            wanted = "every live peer" if level == "live" else level
            raise ConsistencyTimeout(
                f"{self.name}: {what} held by {len(holding) + 1} of the {needed} members "
                f"{wanted} needs after {timeout} s; it stays applied here and still replicates",
                holding,
                needed,
            )

    async def _wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        if ready():
            return True
        waiter = self._host.waiter(timeout)
        entry = (ready, waiter)
        self._waiters.append(entry)
        try:
            return await waiter.wait() or ready()
        finally:
            self._waiters.remove(entry)

    # --- change reports

    def _watch_roots(self) -> None:
        """Attach pycrdt observers to every root of this state (only while someone observes:
        building pycrdt events costs time on every write)."""
        ydoc = self._ydoc
        if ydoc is None:
            return
        for root in [DATA_ROOT, *ydoc.doc.keys()]:
            if root in self._watched or (root == DATA_ROOT and self._kv is not None):
                continue
            kind = _root_kind(root)
            if kind is None:
                continue
            # the raw yrs event: pycrdt's wrapper converts every changed value to Python
            # recursively, which costs more than the merge itself
            self._watched[root] = ydoc.get(root, kind).integrated.observe(self._watcher(root))

    def _unwatch_roots(self) -> None:
        for root, subscription in self._watched.items():
            try:
                subscription.drop()
            except Exception:  # the root went with a replaced document
                log.debug("could not unobserve %s", root)
        self._watched.clear()
        self._changed.clear()

    def _watcher(self, root: str) -> Callable[[Any], None]:
        def saw(event: Any) -> None:  # a raw yrs event: its keys are the changed map keys
            ydoc = self._ydoc
            if ydoc is not None and ydoc.committing_local:
                return  # a batch of plain sets: each was reported when it was made
            if root == DATA_ROOT:
                self._changed.setdefault(root, set()).update(event.keys)
            else:
                self._changed.setdefault(root, set())

        return saw

    def _report_set(self, key: str) -> None:
        """Tell the observers about one batched set (its delta replicates with the batch)."""
        change = Change(frozenset((key,)), "local")
        for callback in list(self._observers):
            try:
                callback(change)
            except Exception:  # an application callback must not stop replication
                log.exception("SharedState %r observer failed", self.name)

    def _report_change(self, origin: str) -> None:
        if self._kv is not None and self._kv.changed:
            if self._observers:
                self._changed.setdefault(DATA_ROOT, set()).update(self._kv.changed)
            self._kv.changed = set()
        if self._counts is not None:
            for counter in self._counts.take_changed():
                if self._observers:
                    self._changed.setdefault(COUNTER_PREFIX + counter, set())
        if not self._observers:
            return
        before = set(self._watched)
        self._watch_roots()  # roots a peer created: their first content is this change
        for root in set(self._watched) - before:
            self._changed.setdefault(root, set())
        changed, self._changed = self._changed, {}
        if not changed:
            return
        names: dict[str, set[str]] = {COUNTER_PREFIX: set(), TEXT_PREFIX: set(), LIST_PREFIX: set()}
        for root in changed:
            for prefix, found in names.items():
                if root.startswith(prefix):
                    found.add(root[len(prefix) :])
        change = Change(
            frozenset(changed.get(DATA_ROOT, ())),
            origin,
            frozenset(names[COUNTER_PREFIX]),
            frozenset(names[TEXT_PREFIX]),
            frozenset(names[LIST_PREFIX]),
        )
        for callback in list(self._observers):
            try:
                callback(change)
            except Exception:  # an application callback must not stop replication
                log.exception("SharedState %r observer failed", self.name)


def _layouts_in(ydoc: YDoc) -> list[str]:
    """The layouts whose roots hold keys in `ydoc`."""
    found = []
    roots = ydoc.doc.keys()
    if DATA_ROOT in roots and len(ydoc.get(DATA_ROOT, Map)):
        found.append("map")
    if KV_ROOT in roots and len(ydoc.get(KV_ROOT, Array)):
        found.append("kv")
    if any(root.startswith(LANE_PREFIX) and len(ydoc.get(root, Array)) for root in roots):
        found.append("lanes")
    return found


def _root_kind(root: str) -> type[Any] | None:
    if root == DATA_ROOT or root.startswith(COUNTER_PREFIX):
        return Map
    if root.startswith(TEXT_PREFIX):
        return Text
    if root.startswith(LIST_PREFIX):
        return Array
    return None


# --- the structures inside a state -------------------------------------------------------


class _Part:
    """A named counter, text or list inside a SharedState, stored in its own root."""

    __slots__ = ("_root", "_state", "name")
    PREFIX = ""

    def __init__(self, state: SharedState, name: str) -> None:
        self._state = state
        self.name = name
        self._root = self.PREFIX + name

    def _apply(self, change: Callable[[SharedState], None]) -> None:
        state = self._state
        txn = state._txn.get()
        if txn is not None:
            txn.operations.append(change)
            return
        state._host.call(lambda: state._write(lambda: change(state)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class SharedCounter(_Part):
    """A counter inside a SharedState: each writer session adds to its own entry, and the
    value is the sum, so concurrent increments all count."""

    __slots__ = ()
    PREFIX = COUNTER_PREFIX

    @property
    def value(self) -> int:
        """The sum of every session's total."""
        state = self._state

        def read() -> int:
            state._bind()
            if state._counts is not None:
                return self._sum(state._counts.totals(self.name))
            return self._sum(state._root(self._root, Map).values())

        return int(state._host.call(read))

    def __int__(self) -> int:
        return self.value

    def increment(self, amount: int = 1) -> None:
        """Add `amount` (an int; negative subtracts)."""
        if type(amount) is not int:
            raise TypeError(f"counter amounts are int, got {type(amount).__name__}")
        if not INT64_MIN <= amount <= INT64_MAX:
            raise ValueError(f"amount {amount} is outside the int64 range")

        def add(s: SharedState) -> None:
            counts = s._counts
            if counts is not None:
                current = counts.own_total(self.name)
            else:
                entries = s._root(self._root, Map)
                mine = s._host.engine().replication.replica_id
                current = entries.get(mine)
            total = (0 if current is None else decode_value(current)) + amount
            if not INT64_MIN <= total <= INT64_MAX:
                raise ValueError(f"counter {self.name!r} would leave the int64 range")
            if counts is not None:
                counts.store(self.name, encode_value(total, INT64_MAX))
            else:
                entries[mine] = encode_value(total, INT64_MAX)

        self._apply(add)  # add raises before anything is written if the total would overflow

    def decrement(self, amount: int = 1) -> None:
        """Subtract `amount`."""
        if type(amount) is not int:
            raise TypeError(f"counter amounts are int, got {type(amount).__name__}")
        self.increment(-amount)

    @staticmethod
    def _sum(totals: Iterable[Any]) -> int:
        # a Yjs client may write anything into the map: only int entries count
        return sum(v for v in map(decode_value, totals) if type(v) is int)


class SharedText(_Part):
    """Collaborative text inside a SharedState; indexes count Python characters."""

    __slots__ = ()
    PREFIX = TEXT_PREFIX

    def __str__(self) -> str:
        return str(self._state._host.call(lambda: str(self._state._root(self._root, Text))))

    @property
    def value(self) -> str:
        """The text."""
        return str(self)

    def __len__(self) -> int:
        return len(str(self))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return str(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def insert(self, index: int, text: str) -> None:
        """Insert `text` before character `index` (0..len)."""
        _check_index(index)
        _check_text(text)

        def change(s: SharedState) -> None:
            root = s._root(self._root, Text)
            current = str(root)
            if not 0 <= index <= len(current):
                raise IndexError(f"index {index} outside 0..{len(current)}")
            if text:
                root.insert(_utf8_offset(current, index), text)

        self._apply(change)

    def append(self, text: str) -> None:
        """Add `text` at the end."""
        _check_text(text)

        def change(s: SharedState) -> None:
            root = s._root(self._root, Text)
            if text:
                root.insert(len(str(root).encode("utf-8")), text)

        self._apply(change)

    def delete(self, index: int, length: int = 1) -> None:
        """Delete `length` characters from character `index`."""
        _check_index(index)
        _check_index(length)

        def change(s: SharedState) -> None:
            root = s._root(self._root, Text)
            current = str(root)
            if index + length > len(current):
                raise IndexError(f"{index}+{length} past the end ({len(current)} characters)")
            start = _utf8_offset(current, index)
            end = _utf8_offset(current, index + length)
            if end > start:
                del root[start:end]

        self._apply(change)

    def clear(self) -> None:
        """Delete everything."""

        def change(s: SharedState) -> None:
            root = s._root(self._root, Text)
            size = len(str(root).encode("utf-8"))
            if size:
                del root[0:size]

        self._apply(change)


class SharedList(_Part):
    """A replicated sequence inside a SharedState; items use the SharedState value codec."""

    __slots__ = ()
    PREFIX = LIST_PREFIX

    def to_list(self) -> list[Any]:
        """The items, as plain Python values."""
        state = self._state
        blobs = state._host.call(lambda: list(state._root(self._root, Array)))
        return [decode_value(blob) for blob in blobs]

    def __len__(self) -> int:
        state = self._state
        return int(state._host.call(lambda: len(state._root(self._root, Array))))

    def __iter__(self) -> Iterator[Any]:
        return iter(self.to_list())

    def __getitem__(self, index: int) -> Any:
        return self.to_list()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return self.to_list() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def append(self, value: Any) -> None:
        """Add `value` at the end."""
        self.extend([value])

    def extend(self, values: list[Any]) -> None:
        """Add `values` at the end, in one delta."""
        blobs = [self._state._encode("item", v) for v in values]

        def change(s: SharedState) -> None:
            if blobs:
                s._root(self._root, Array).extend(blobs)

        self._apply(change)

    def insert(self, index: int, value: Any) -> None:
        """Insert `value` before position `index` (0..len)."""
        _check_index(index)
        blob = self._state._encode("item", value)

        def change(s: SharedState) -> None:
            root = s._root(self._root, Array)
            if index > len(root):
                raise IndexError(f"index {index} outside 0..{len(root)}")
            root.insert(index, blob)

        self._apply(change)

    def __delitem__(self, index: int) -> None:
        if type(index) is not int:
            raise TypeError(f"list indexes are int, got {type(index).__name__}")

        def change(s: SharedState) -> None:
            root = s._root(self._root, Array)
            position = index + len(root) if index < 0 else index
            if not 0 <= position < len(root):
                raise IndexError(f"index {index} outside a list of {len(root)}")
            del root[position]

        self._apply(change)

    def clear(self) -> None:
        """Remove every item."""

        def change(s: SharedState) -> None:
            root = s._root(self._root, Array)
            if len(root):
                del root[0 : len(root)]

        self._apply(change)


def _check_index(index: Any) -> None:
    if type(index) is not int:
        raise TypeError(f"indexes and lengths are int, got {type(index).__name__}")
    if index < 0:
        raise IndexError(f"index {index} is negative")


def _check_text(text: Any) -> None:
    if type(text) is not str:
        raise TypeError(f"text must be str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"text is not valid UTF-8: {exc}") from None


def _utf8_offset(text: str, index: int) -> int:
    """pycrdt 0.14 Text offsets count UTF-8 bytes; ours count characters."""
    return len(text[:index].encode("utf-8"))


# --- the asyncio node as a host ----------------------------------------------------------


class AsyncioWaiter:
    """A Waiter on the running event loop."""

    __slots__ = ("_future", "_timeout")

    def __init__(self, timeout: float) -> None:
        self._future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._timeout = timeout

    def wake(self) -> None:
        """Resolve the wait."""
        if not self._future.done():
            self._future.set_result(True)

    async def wait(self) -> bool:
        """True once woken, False after the timeout."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._future), self._timeout)
        except TimeoutError:
            return False


class NodeHost:
    """A `foundation_p2p.Node` as a StateHost. Calls from other threads hop to the node's
    loop (runtime.thread.call_on_loop); calls on the loop run directly."""

    def __init__(self, node: Any, flush_durable: Callable[[], Awaitable[None]]) -> None:
        self.node = node
        self._flush_durable = flush_durable

    @property
    def config(self) -> Config:
        """The node's config."""
        return self.node.config  # type: ignore[no-any-return]

    def engine(self) -> Engine:
        """The node's running engine (NodeError if it is not started)."""
        return self.node._require_engine()  # type: ignore[no-any-return]

    def on_owner(self) -> bool:
        """Whether the caller runs on the node's loop thread."""
        return bool(threading.get_ident() == self.node._thread_id)

    def call(self, function: Callable[[], T]) -> T:
        """Run `function` on the node's loop thread."""
        if self.on_owner():
            return function()
        from foundation_p2p.runtime.thread import call_on_loop

        self.node._require_engine()
        return call_on_loop(self.node._loop, function)

    async def run(self, coroutine: Awaitable[T]) -> T:
        """Await `coroutine` on the node's loop, whichever loop awaits this."""
        if self.on_owner():
            return await coroutine
        self.node._require_engine()
        future: Future[T] = asyncio.run_coroutine_threadsafe(
            coroutine,  # type: ignore[arg-type]
            self.node._loop,
        )
        return await asyncio.wrap_future(future)

    def writable(self) -> None:
        """NodeError if the node is not running."""
        self.node._require_driver()

    def write(self, replica: str, delta: bytes) -> int:
        """Replicate a local delta; return its write number."""
        self.node._require_driver().local_write(replica, delta)
        return self.engine().write_seq

    def subscribe(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """Listen to the driver's events."""
        return self.node._require_driver().subscribe(listener)  # type: ignore[no-any-return]

    def waiter(self, timeout: float) -> Waiter:
        """A waiter on the node's loop."""
        return AsyncioWaiter(timeout)

    def soon(self, callback: Callable[[], None]) -> bool:
        """Run `callback` on the node's loop after the callbacks already queued; what it wrote
        is pushed at once if the engine's push is due (not in a burst: engine.replication)."""
        loop = self.node._loop
        if loop is None:
            return False
        loop.call_soon(self._after_burst, callback)
        return True

    def _after_burst(self, callback: Callable[[], None]) -> None:
        driver = getattr(self.node, "driver", None)
        if driver is None:
            callback()
        else:  # the push is written in this callback (runtime.driver.Driver.push_after)
            driver.push_after(callback)

    def flush_durable(self) -> Awaitable[None]:
        """Wait for the node's disk."""
        return self._flush_durable()
