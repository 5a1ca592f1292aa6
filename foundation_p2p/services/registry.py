"""The service registry: named instances on the `sys/registry` replica, local lookups, and
load-balanced picks over healthy instances.

The replica is an observed-remove map keyed by instance id; each value is a last-writer-wins
register holding the instance's record. Lookups read a local index rebuilt lazily after the
replica changes, filtered by the member table at lookup time: a dead or departed node's
instances vanish from lookups as soon as this node learns of it, and are then removed from
the replica for good. An owner whose live instance was removed (it was wrongly declared dead)
writes it back.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from crdts import LWWRegister, ORMap, Timestamp, normalize_value
from foundation_p2p.engine import (
    Engine,
    Event,
    MemberDown,
    MemberLeft,
    MemberSuspect,
    MemberUp,
    ReplicaChanged,
)
from foundation_p2p.services.replicas import ReplicaHandle

log = logging.getLogger("foundation_p2p.services.registry")

REGISTRY = "sys/registry"
STRATEGIES = ("round_robin", "random", "least_loaded", "consistent_hash")
_GONE = frozenset({"dead", "left"})
_HASHED_MAX = 10_000

Handler = Callable[[Any], Any] | Callable[[Any], Awaitable[Any]]


class ServiceNotFound(LookupError):
    """No healthy instance of the named service is known to this node."""

    def __init__(self, name: str, detail: str = "") -> None:
        super().__init__(
            f"no healthy instance of service {name!r}{': ' + detail if detail else ''}"
        )
        self.name = name


class ServiceHost(Protocol):
    """What a service needs from its node: the asyncio Node and the simulator's SimNode both fit."""

    node_id: str

    @property
    def engine(self) -> Engine | None:
        """The node's protocol engine."""
        ...

    def replica(self, name: str, cls: type[Any], **options: Any) -> ReplicaHandle[Any]:
        """A live handle on a replica."""
        ...


@dataclass(frozen=True, slots=True)
class Instance:
    """One registered instance of a service, as every node reads it from the registry."""

    id: str
    name: str
    node: str
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    load: float = 0.0

    def to_record(self) -> list[Any]:
        """The replicated record (the id is the map key)."""
        return [self.name, self.node, dict(self.capabilities), dict(self.meta), self.load]

    @classmethod
    def from_record(cls, instance_id: str, record: Any) -> Instance | None:
        """An Instance from a replicated record; None for a malformed one."""
        if not isinstance(record, list) or len(record) != 5:
            return None
        name, node, capabilities, meta, load = record
        if (
            type(name) is not str
            or type(node) is not str
            or not isinstance(capabilities, dict)
            or not isinstance(meta, dict)
            or type(load) not in (int, float)
        ):
            return None
        return cls(instance_id, name, node, capabilities, meta, float(load))


class Registration:
    """A live registration of this node: update its load or metadata, or unregister it."""

    __slots__ = ("_registry", "handler", "instance")

    def __init__(self, registry: Registry, instance: Instance, handler: Handler | None) -> None:
        self._registry = registry
        self.instance = instance
        self.handler = handler

    @property
    def id(self) -> str:
        """The instance id."""
        return self.instance.id

    @property
    def name(self) -> str:
        """The service name."""
        return self.instance.name

    def update(self, load: float | None = None, meta: Mapping[str, Any] | None = None) -> None:
        """Publish a new load figure and/or metadata for this instance."""
        if load is not None and (type(load) not in (int, float) or load != load):
            raise TypeError(f"load must be a number, got {load!r}")
        instance = Instance(
            self.instance.id,
            self.instance.name,
            self.instance.node,
            self.instance.capabilities,
            _checked_map(meta, "meta") if meta is not None else self.instance.meta,
            float(load) if load is not None else self.instance.load,
        )
        self.instance = instance
        self._registry._write(instance)

    def unregister(self) -> None:
        """Remove this instance cluster-wide (idempotent)."""
        self._registry._unregister(self)

    def __repr__(self) -> str:
        return f"Registration({self.instance.name!r}, {self.instance.id!r})"


class Watch:
    """A `watch()` subscription; `close()` ends it."""

    __slots__ = ("_registry", "callback", "last", "name")

    def __init__(
        self, registry: Registry, name: str, callback: Callable[[tuple[Instance, ...]], object]
    ) -> None:
        self._registry = registry
        self.name = name
        self.callback = callback
        self.last: tuple[Instance, ...] = registry.lookup(name)

    def close(self) -> None:
        """Stop calling the callback."""
        watches = self._registry._watches
        if self in watches:
            watches.remove(self)


class Registry:
    """`node.registry`: register instances, look them up locally, pick one to talk to."""

    def __init__(self, host: ServiceHost, rng: random.Random | None = None) -> None:
        self.host = host
        self.node_id = host.node_id
        self._handle: ReplicaHandle[ORMap[LWWRegister]] = host.replica(
            REGISTRY, ORMap, value_type=LWWRegister
        )
        self._rng = rng or random.Random()
        self._seq = itertools.count(1)
        engine = host.engine
        assert engine is not None
        self._membership = engine.membership
        self._session = engine.replication.replica_id
        self._local: dict[str, Registration] = {}
        self._index: dict[str, dict[str, Instance]] = {}
        self._seen: dict[str, tuple[Any, Instance | None]] = {}  # id -> (CRDT view, decoded)
        self._dirty = True
        self._healthy: dict[str, tuple[Instance, ...]] = {}
        self._alive: dict[str, tuple[Instance, ...]] = {}
        self._alive_local: dict[str, tuple[Instance, ...]] = {}
        self._hashed: dict[tuple[str, Any], Instance] = {}  # consistent_hash picks, per view
        self._where: dict[Any, tuple[Instance, ...]] = {}  # filtered lookups, per view
        self._view_version = -1
        self._round_robin: dict[str, int] = {}
        self._watches: list[Watch] = []
        self.counters: dict[str, int] = {
            "malformed_records": 0,
            "removed_for_dead": 0,
            "removed_stale_session": 0,
        }
        self._reassert()  # a node restored from persistence drops its old session's instances

    # --- registering --------------------------------------------------------------------------

    async def register(
        self,
        name: str,
        handler: Handler | None = None,
        capabilities: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        load: float = 0.0,
    ) -> Registration:
        """Register an instance of service `name` on this node (many per name are fine)."""
        return self.register_now(name, handler, capabilities, meta, load)

    def register_now(
        self,
        name: str,
        handler: Handler | None = None,
        capabilities: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        load: float = 0.0,
    ) -> Registration:
        """register(), without awaiting (for synchronous drivers such as the simulator)."""
        if type(name) is not str or not name:
            raise TypeError(f"a service name is a non-empty str, got {name!r}")
        if handler is not None and not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        if type(load) not in (int, float):
            raise TypeError(f"load must be a number, got {load!r}")
        instance = Instance(
            f"{self._session}/{next(self._seq)}",
            name,
            self.node_id,
            _checked_map(capabilities, "capabilities"),
            _checked_map(meta, "meta"),
            float(load),
        )
        registration = Registration(self, instance, handler)
        self._local[instance.id] = registration
        self._write(instance)
        return registration

    def local(self, name: str) -> list[Registration]:
        """This node's own registrations of `name`."""
        return [r for r in self._local.values() if r.instance.name == name]

    def registration(self, instance_id: str) -> Registration | None:
        """This node's registration with this instance id, if any."""
        return self._local.get(instance_id)

    # --- reading ------------------------------------------------------------------------------

    def lookup(self, name: str, where: Mapping[str, Any] | None = None) -> tuple[Instance, ...]:
        """Instances of `name` on nodes not known dead or departed; local, no network.

        `where` keeps instances whose capabilities hold every given key with the given value.
        """
        if self._dirty or self._membership.version != self._view_version:
            self._refresh()
        found = self._healthy.get(name)
        if found is None:
            found = self._healthy[name] = self._filter(name, _GONE)
        if where:
            wanted = list(where.items())
            try:
                cache_key: Any = (name, *wanted)
                cached = self._where.get(cache_key)
            except TypeError:  # an unhashable value: filter without the cache
                cache_key, cached = None, None
            if cached is not None:
                return cached
            matching = []
            for instance in found:
                capabilities = instance.capabilities
                for k, v in wanted:
                    if k not in capabilities or capabilities[k] != v:
                        break
                else:
                    matching.append(instance)
            result = tuple(matching)
            if cache_key is not None:
                if len(self._where) >= _HASHED_MAX:
                    self._where.clear()
                self._where[cache_key] = result
            return result
        return found

    def names(self) -> list[str]:
        """Every service name with at least one instance on a node not known dead."""
        if self._dirty or self._membership.version != self._view_version:
            self._refresh()
        return sorted(name for name in self._index if self.lookup(name))

    def pick(
        self,
        name: str,
        strategy: str = "round_robin",
        key: Any = None,
        prefer_local: bool = True,
        where: Mapping[str, Any] | None = None,
        exclude: frozenset[str] | set[str] = frozenset(),
    ) -> Instance:
        """One healthy instance of `name` by `strategy`; ServiceNotFound if there is none.

        Healthy means on a node this node sees alive (suspect ones only if no other is left).
        `prefer_local` keeps the choice on this node when it has an instance (not for
        consistent_hash, whose point is that every node picks the same instance for a key).
        """
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if self._dirty or self._membership.version != self._view_version:
            self._refresh()
        candidates = self._alive.get(name)
        if candidates is None:
            candidates = self._alive[name] = self._filter(name, _GONE | {"suspect"})
        if where or exclude:
            wanted = {i.id for i in self.lookup(name, where)} if where else None
            candidates = tuple(
                i for i in candidates if i.id not in exclude and (wanted is None or i.id in wanted)
            )
        if not candidates:
            candidates = tuple(i for i in self.lookup(name, where) if i.id not in exclude)
        if not candidates:
            raise ServiceNotFound(name)
        if strategy == "consistent_hash":
            if key is None:
                raise ValueError("strategy='consistent_hash' needs a key")
            cached = candidates is self._alive[name] and type(key) in (str, int, bytes)
            chosen: Instance | None = self._hashed.get((name, key)) if cached else None
            if chosen is None:
                chosen = rendezvous(key, candidates, lambda i: i.id)
                if cached:
                    if len(self._hashed) >= _HASHED_MAX:
                        self._hashed.clear()
                    self._hashed[(name, key)] = chosen
            assert chosen is not None
            return chosen
        if prefer_local:
            if candidates is self._alive[name]:  # the common case: cached per name
                mine = self._alive_local.get(name)
                if mine is None:
                    mine = self._alive_local[name] = self._local_only(candidates)
            else:
                mine = self._local_only(candidates)
            if mine:
                candidates = mine
        if len(candidates) == 1:
            return candidates[0]
        if strategy == "round_robin":
            turn = self._round_robin.get(name, -1) + 1
            self._round_robin[name] = turn
            return candidates[turn % len(candidates)]
        if strategy == "random":
            return self._rng.choice(candidates)
        lowest = min(i.load for i in candidates)
        return self._rng.choice([i for i in candidates if i.load == lowest])

    def watch(self, name: str, callback: Callable[[tuple[Instance, ...]], object]) -> Watch:
        """Call `callback(instances)` whenever the instances lookup(name) returns change."""
        watch = Watch(self, name, callback)
        self._watches.append(watch)
        return watch

    # --- driver events ------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Keep the index and the replica in step with replica and membership changes."""
        if isinstance(event, ReplicaChanged):
            if event.name != REGISTRY:
                return
            self._dirty = True
            if event.origin != "local":
                self._reassert()
        elif isinstance(event, MemberDown | MemberLeft):
            self._remove_node(event.node)
        elif not isinstance(event, MemberUp | MemberSuspect):
            return
        if self._watches:
            self._notify()

    # --- internals ----------------------------------------------------------------------------

    def _write(self, instance: Instance) -> None:
        record = instance.to_record()
        self._handle.update(instance.id, lambda register: register.set(record, ts=self._now()))
        self._dirty = True
        if self._watches:
            self._notify()

    def _unregister(self, registration: Registration) -> None:
        if self._local.pop(registration.id, None) is None:
            return
        self._handle.remove(registration.id)
        self._dirty = True
        if self._watches:
            self._notify()

    def _now(self) -> Timestamp:
        engine = self.host.engine
        assert engine is not None
        return engine.timestamp()

    def _refresh(self) -> None:
        if self._dirty:
            # ORMap.get hands back the same view object while a key is unchanged, so only
            # changed keys are decoded again: a remote change costs a pass, not a rebuild.
            index: dict[str, dict[str, Instance]] = {}
            seen: dict[str, tuple[Any, Instance | None]] = {}
            previous = self._seen
            crdt = self._handle.crdt
            for instance_id in crdt:
                view = crdt.get(instance_id)
                known = previous.get(instance_id)
                if known is not None and known[0] is view:
                    instance = known[1]
                else:
                    instance = (
                        Instance.from_record(instance_id, view.value) if view is not None else None
                    )
                    if instance is None:
                        self.counters["malformed_records"] += 1
                seen[instance_id] = (view, instance)
                if instance is not None:
                    index.setdefault(instance.name, {})[instance_id] = instance
            self._index, self._seen = index, seen
            self._dirty = False
        self._healthy.clear()
        self._alive.clear()
        self._alive_local.clear()
        self._hashed.clear()
        self._where.clear()
        self._view_version = self._membership.version

    def _local_only(self, candidates: tuple[Instance, ...]) -> tuple[Instance, ...]:
        return tuple(i for i in candidates if i.node == self.node_id)

    def _filter(self, name: str, excluded: frozenset[str]) -> tuple[Instance, ...]:
        status = self._membership.status
        instances = self._index.get(name)
        if not instances:
            return ()
        return tuple(
            sorted(
                (i for i in instances.values() if status(i.node) not in excluded),
                key=lambda i: i.id,
            )
        )

    def _remove_node(self, node: str) -> None:
        if node == self.node_id:
            return
        if self._dirty:
            self._refresh()
        doomed = [
            instance_id
            for instances in self._index.values()
            for instance_id, instance in instances.items()
            if instance.node == node
        ]
        for instance_id in doomed:
            self._handle.remove(instance_id)
        if doomed:
            self.counters["removed_for_dead"] += len(doomed)
            self._dirty = True

    def _reassert(self) -> None:
        """Write back our live instances a peer removed, and remove instances a previous
        session of this node left behind (they would otherwise look alive forever)."""
        if self._dirty:
            self._refresh()
        stale = [
            instance_id
            for instances in self._index.values()
            for instance_id, instance in instances.items()
            if instance.node == self.node_id
            and instance_id not in self._local
            and not instance_id.startswith(self._session + "/")
        ]
        for instance_id in stale:
            self._handle.remove(instance_id)
        if stale:
            self.counters["removed_stale_session"] += len(stale)
            self._dirty = True
        crdt = self._handle.crdt
        for registration in list(self._local.values()):
            if registration.id not in crdt:
                log.info("re-registering %r: it was removed while we were alive", registration)
                self._write(registration.instance)

    def _notify(self) -> None:
        for watch in list(self._watches):
            current = self.lookup(watch.name)
            if current != watch.last:
                watch.last = current
                try:
                    watch.callback(current)
                except Exception:  # an application callback must not stop the node
                    log.exception("registry watch callback for %r failed", watch.name)


def rendezvous(key: Any, candidates: Any, ident: Callable[[Any], str]) -> Any:
    """The candidate with the highest hash of (key, id): stable as other candidates come and go."""
    prefix = repr(key).encode()
    best, best_score = None, b""
    for candidate in candidates:
        score = hashlib.blake2b(
            prefix + b"\x00" + ident(candidate).encode(), digest_size=8
        ).digest()
        if best is None or score > best_score:
            best, best_score = candidate, score
    return best


def _checked_map(value: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(type(k) is str for k in value):
        raise TypeError(f"{what} must be a str-keyed mapping, got {value!r}")
    return dict(normalize_value(dict(value)))
