"""Caches in three modes, like Nebulex: `local`, `replicated` and `partitioned`.

- local: this node's memory only (LRU, TTL); `invalidate` reaches every node's copy.
- replicated: every node holds every entry in the `sys/cache` replica (a last-writer-wins map
  with TTL); reads are local, writes replicate, `delete`/`invalidate` write a tombstone.
- partitioned: each key lives on one owner, chosen by rendezvous hashing over the live nodes
  that opened the cache; other nodes route reads and writes to it and keep a near-cache.
  When the owners change, entries move to their new owner and near-caches are dropped.

`get_or_compute` is single-flight per node: concurrent misses of one key run `fn` once; if it
raises, every waiter gets the error and nothing is stored.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from crdts import LWWMap, normalize_key, normalize_value
from foundation_p2p.engine import Event, MemberDown, MemberLeft, MemberSuspect, MemberUp
from foundation_p2p.services.messaging import Messaging
from foundation_p2p.services.registry import Instance, Registry, ServiceHost, rendezvous

log = logging.getLogger("foundation_p2p.services.cache")

CACHE_REPLICA = "sys/cache"
CACHE_PREFIX = "sys.cache/"
MODES = ("local", "replicated", "partitioned")
_MISS = object()
COMPACT_EVERY = 30.0
"""Seconds between compactions of the sys/cache replica, run by the next write after one is due:
expired entries are dropped (else a cache of short-lived keys grows for good) and tombstones
older than the config's tombstone_ttl."""


class Cache:
    """`node.cache` / `node.open_cache(name, mode=...)`: a named cache in one of three modes."""

    def __init__(
        self,
        host: ServiceHost,
        registry: Registry,
        messaging: Messaging | None,
        name: str,
        mode: str = "replicated",
        max_entries: int = 10_000,
        timeout: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if type(max_entries) is not int or max_entries < 1:
            raise ValueError(f"max_entries must be a positive int, got {max_entries!r}")
        if messaging is None and mode != "replicated":
            raise ValueError(f"mode {mode!r} needs messaging (an asyncio Node)")
        self.name = name
        self.mode = mode
        self.max_entries = max_entries
        self.timeout = timeout
        self.options = {"mode": mode, "max_entries": max_entries}
        self.node_id = host.node_id
        self.stats: Counter[str] = Counter()
        self._registry = registry
        self._messaging = messaging
        self._clock = clock
        self._channel = CACHE_PREFIX + name
        self._local: OrderedDict[Hashable, tuple[Any, float | None]] = OrderedDict()
        self._near: OrderedDict[Hashable, tuple[Any, float | None]] = OrderedDict()
        self._flights: dict[Hashable, asyncio.Future[Any]] = {}
        self._owners: tuple[str, ...] = ()
        self._replica = host.replica(CACHE_REPLICA, LWWMap) if mode == "replicated" else None
        self._host = host
        self._compacted_at = clock()
        if messaging is not None:
            messaging.serve(self._channel, self._serve)
            self._membership = registry.register_now(self._channel)
            self._watch = registry.watch(self._channel, self._owners_changed)

    # --- the application's view ---------------------------------------------------------------

    async def get(self, key: Any, default: Any = None) -> Any:
        """The value at `key`, or `default` if absent or expired."""
        value = await self._get(_key(key))
        if value is _MISS:
            self.stats["misses"] += 1
            return default
        self.stats["hits"] += 1
        return value

    async def put(self, key: Any, value: Any, ttl: float | None = None) -> None:
        """Store `value` at `key`, expiring after `ttl` seconds if given."""
        await self._put(_key(key), _value(value), _ttl_ms(ttl))

    async def delete(self, key: Any) -> None:
        """Remove `key` cluster-wide (same as invalidate)."""
        await self.invalidate(key)

    async def invalidate(self, key: Any) -> None:
        """Drop `key` from this cache on every node."""
        key = _key(key)
        self.stats["invalidations"] += 1
        if self._replica is not None:
            self._replica.delete((self.name, key))
            return
        assert self._messaging is not None
        self._local.pop(key, None)
        self._near.pop(key, None)
        if self.mode == "partitioned":
            owner = self._owner(key)
            if owner != self.node_id:
                await self._messaging.request_node(owner, self._channel, ["del", key], self.timeout)
        for node in self._nodes():
            if node != self.node_id:
                self._messaging.send_node(node, self._channel, ["drop", key])

    async def get_or_compute(
        self, key: Any, compute: Callable[[], Any], ttl: float | None = None
    ) -> Any:
        """The value at `key`; on a miss, `await compute()` once per node, store and return it.

        Concurrent misses of the same key on this node share one computation. If it raises,
        every waiter gets the exception and nothing is cached.
        """
        key = _key(key)
        ttl_ms = _ttl_ms(ttl)
        value = await self._get(key)
        if value is not _MISS:
            self.stats["hits"] += 1
            return value
        self.stats["misses"] += 1
        flight = self._flights.get(key)
        if flight is not None:
            self.stats["coalesced"] += 1
            return await asyncio.shield(flight)
        flight = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        try:
            result = compute()
            if inspect.isawaitable(result):
                result = await result
            await self._put(key, _value(result), ttl_ms)
        except BaseException as exc:
            self.stats["compute_errors"] += 1
            flight.set_exception(exc)
            flight.exception()  # retrieved: no "never retrieved" warning when nobody waited
            raise
        else:
            flight.set_result(result)
            self.stats["computed"] += 1
            return result
        finally:
            del self._flights[key]

    def __len__(self) -> int:
        """Entries held on this node (its own tier; near-cache entries excluded)."""
        if self._replica is not None:
            now_ms = int(self._clock() * 1000)
            return sum(1 for k in self._replica.crdt.value_at(now_ms) if k[0] == self.name)
        return len(self._local)

    # --- tiers --------------------------------------------------------------------------------

    async def _get(self, key: Hashable) -> Any:
        if self._replica is not None:
            return self._replica.crdt.get((self.name, key), _MISS, int(self._clock() * 1000))
        if self.mode == "local":
            return self._read(self._local, key)
        owner = self._owner(key)
        if owner == self.node_id:
            return self._read(self._local, key)
        value = self._read(self._near, key)
        if value is not _MISS:
            return value
        assert self._messaging is not None
        found, value, ttl_ms = await self._messaging.request_node(
            owner, self._channel, ["get", key], self.timeout
        )
        if not found:
            return _MISS
        self._store(self._near, key, value, ttl_ms)
        return value

    async def _put(self, key: Hashable, value: Any, ttl_ms: int | None) -> None:
        if self._replica is not None:
            self._replica.set((self.name, key), value, ttl_ms=ttl_ms)
            self._compact_if_due()
            return
        owner = self._owner(key) if self.mode == "partitioned" else self.node_id
        if owner != self.node_id:
            assert self._messaging is not None
            await self._messaging.request_node(
                owner, self._channel, ["put", key, value, ttl_ms], self.timeout
            )
            self._store(self._near, key, value, ttl_ms)
            return
        self._store(self._local, key, value, ttl_ms)
        if self.mode == "partitioned":
            self._drop_near_copies(key, self.node_id)

    def _compact_if_due(self) -> None:
        """Every COMPACT_EVERY seconds, drop this node's expired and long-deleted entries."""
        now = self._clock()
        engine = self._host.engine
        if now - self._compacted_at < COMPACT_EVERY or engine is None:
            return
        self._compacted_at = now
        now_ms = int(now * 1000)
        keep_ms = int(engine.config.tombstone_ttl * 1000)
        dropped = engine.compact(CACHE_REPLICA, now_ms - keep_ms, now_ms)
        self.stats["compacted"] += dropped

    def _drop_near_copies(self, key: Hashable, writer: str) -> None:
        """The owner took a new value: other nodes' near-cache copies are stale."""
        assert self._messaging is not None
        for node in self._nodes():
            if node != self.node_id and node != writer:
                self._messaging.send_node(node, self._channel, ["drop", key])

    def _read(self, tier: OrderedDict[Hashable, tuple[Any, float | None]], key: Hashable) -> Any:
        entry = tier.get(key)
        if entry is None:
            return _MISS
        value, expires = entry
        if expires is not None and self._clock() >= expires:
            del tier[key]
            self.stats["expired"] += 1
            return _MISS
        tier.move_to_end(key)
        return value

    def _store(
        self,
        tier: OrderedDict[Hashable, tuple[Any, float | None]],
        key: Hashable,
        value: Any,
        ttl_ms: int | None,
    ) -> None:
        expires = self._clock() + ttl_ms / 1000 if ttl_ms is not None else None
        tier[key] = (value, expires)
        tier.move_to_end(key)
        while len(tier) > self.max_entries:
            tier.popitem(last=False)
            self.stats["evictions"] += 1

    # --- ownership (partitioned) --------------------------------------------------------------

    def _nodes(self) -> list[str]:
        return sorted({i.node for i in self._registry.lookup(self._channel)} | {self.node_id})

    def _owner(self, key: Hashable) -> str:
        owners = self._owners or self._live_owners()
        chosen: str = rendezvous(key, owners, str)
        return chosen

    def _live_owners(self) -> tuple[str, ...]:
        status = self._registry._membership.status
        nodes = [n for n in self._nodes() if n == self.node_id or status(n) == "alive"]
        self._owners = tuple(nodes)
        return self._owners

    def _owners_changed(self, instances: tuple[Instance, ...] = ()) -> None:
        if self.mode != "partitioned" or self._messaging is None:
            return
        before = self._owners
        if self._live_owners() == before:
            return
        self._near.clear()
        for key, (value, expires) in list(self._local.items()):
            owner = self._owner(key)
            if owner == self.node_id:
                continue
            del self._local[key]
            ttl_ms = None
            if expires is not None:
                ttl_ms = int((expires - self._clock()) * 1000)
                if ttl_ms <= 0:
                    continue
            self.stats["handed_over"] += 1
            self._messaging.send_node(owner, self._channel, ["put", key, value, ttl_ms])

    def close(self) -> None:
        """Leaving: a partitioned cache hands the entries it owns to their next owners."""
        if self.mode != "partitioned" or self._messaging is None:
            return
        self._owners = tuple(n for n in self._live_owners() if n != self.node_id)
        for key, (value, expires) in list(self._local.items()):
            ttl_ms = None if expires is None else int((expires - self._clock()) * 1000)
            if self._owners and (ttl_ms is None or ttl_ms > 0):
                self.stats["handed_over"] += 1
                self._messaging.send_node(
                    self._owner(key), self._channel, ["put", key, value, ttl_ms]
                )
        self._local.clear()

    def on_event(self, event: Event) -> None:
        """Membership changes move partitioned keys to their new owners."""
        if isinstance(event, MemberUp | MemberSuspect | MemberDown | MemberLeft):
            self._owners_changed()

    def _serve(self, src: str, request: Any) -> Any:
        """A peer's request on this cache's channel: ["get"|"put"|"del"|"drop", key, ...]."""
        if not isinstance(request, list) or not request or request[0] not in _OPS:
            raise ValueError(f"malformed cache request {request!r:.80}")
        op, key = request[0], normalize_key(request[1])
        if op == "get":
            entry = self._local.get(key)
            value = self._read(self._local, key)
            if value is _MISS or entry is None:
                return [False, None, None]
            expires = entry[1]
            ttl_ms = None if expires is None else max(1, int((expires - self._clock()) * 1000))
            return [True, value, ttl_ms]
        if op == "put":
            value, ttl_ms = request[2], request[3]
            if ttl_ms is not None and (type(ttl_ms) is not int or ttl_ms <= 0):
                raise ValueError(f"bad ttl_ms {ttl_ms!r}")
            self._store(self._local, key, normalize_value(value), ttl_ms)
            self._drop_near_copies(key, src)
            return True
        self._local.pop(key, None)
        self._near.pop(key, None)
        return True


_OPS = frozenset({"get", "put", "del", "drop"})


def _key(key: Any) -> Hashable:
    try:
        return normalize_key(key)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a cache key is a str, int, bytes or a tuple of them: {exc}") from None


def _value(value: Any) -> Any:
    try:
        return normalize_value(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a cached value must be msgpack-able: {exc}") from None


def _ttl_ms(ttl: float | None) -> int | None:
    if ttl is None:
        return None
    if type(ttl) not in (int, float) or not ttl > 0:
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
    return max(1, int(ttl * 1000))
