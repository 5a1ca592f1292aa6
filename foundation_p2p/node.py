"""Node: the asyncio-facing public class. Composes the engine, the driver, the transport,
discovery and (optionally) the HTTP server."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crdts import Status
from foundation_p2p.config import Config, ConfigError
from foundation_p2p.engine import (
    PROTOCOL_VERSION,
    Engine,
    Event,
    MemberDown,
    MemberLeft,
    MemberSuspect,
    MemberUp,
)
from foundation_p2p.environment import choose_discovery
from foundation_p2p.runtime.driver import Driver
from foundation_p2p.runtime.faults import PartitionGate
from foundation_p2p.runtime.metrics import Observer
from foundation_p2p.runtime.persistence import (
    DURABILITIES,
    ON_CORRUPT,
    BackupInfo,
    Durability,
    Journal,
    Loaded,
    OnCorrupt,
    PersistenceError,
    Store,
    backup_bytes,
    iter_replicas,
    read_backup,
    restore_backup,
    restore_into,
    stored_node_id,
    write_backup_file,
)
from foundation_p2p.services.replicas import ReplicaHandle
from foundation_p2p.services.state import NodeHost, SharedState, with_layout
from transport import Keyring, Limits, Transport, load_key_file
from transport.discovery import Announcement, Candidate, Discovery

if TYPE_CHECKING:
    from foundation_p2p.services.cache import Cache
    from foundation_p2p.services.cluster_services import ClusterServices
    from foundation_p2p.services.messaging import PubSub
    from foundation_p2p.services.placement import Singleton, Spread
    from foundation_p2p.services.registry import Registry

log = logging.getLogger("foundation_p2p.node")

MemberEvent = MemberUp | MemberSuspect | MemberDown | MemberLeft


class NodeError(RuntimeError):
    """The node was used in a way it cannot serve (not started, wrong thread, ...)."""


def default_node_id() -> str:
    """A readable, unique id: the host name plus a random suffix."""
    host = socket.gethostname().split(".")[0] or "node"
    return f"{host}-{uuid.uuid4().hex[:6]}"


class Node:
    """One member of a cluster, driven by asyncio.

    `async with Node(cluster="plant-7", seeds=["10.0.0.5:7946"]) as node:` joins, replicates,
    and leaves gracefully on exit.
    """

    def __init__(
        self,
        cluster: str = "default",
        node_id: str | None = None,
        listen: str | None = None,
        discovery: str | Discovery | None = "auto",
        seeds: Iterable[str] = (),
        config: Config | None = None,
        key: bytes | str | None = None,
        key_file: str | Path | None = None,
        metadata: Mapping[str, Any] | None = None,
        http: str | None = None,
        advertise: str | None = None,
        mdns_interfaces: list[str] | None = None,
        data_dir: str | Path | None = None,
        durability: Durability = "batch",
        on_corrupt: OnCorrupt = "fail",
        fault_injection: bool = False,
    ) -> None:
        if not isinstance(cluster, str) or not cluster:
            raise ConfigError(f"cluster must be a non-empty str, got {cluster!r}")
        self.cluster = cluster
        self.node_id = node_id or default_node_id()
        # persistence: a data dir remembers the node's id, replicas, incarnation and peers
        if durability not in DURABILITIES:
            raise ConfigError(f"durability must be one of {DURABILITIES}, got {durability!r}")
        if on_corrupt not in ON_CORRUPT:
            raise ConfigError(f"on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}")
        if data_dir is None and config is not None and config.data_dir:
            data_dir = config.data_dir  # the config names the data dir when the call does not
        self.data_dir = Path(data_dir) if data_dir is not None else None
        if self.data_dir is not None and node_id is None:
            self.node_id = stored_node_id(self.data_dir) or self.node_id
        self.durability: Durability = durability
        self.on_corrupt: OnCorrupt = on_corrupt
        self.journal: Journal | None = None
        self._store: Store | None = None
        if key is None and key_file is None and config is not None and config.key_file:
            key_file = config.key_file  # the config names the key when the call does not
        self.keyring = _keyring(key, key_file)
        self.config = config or (
            Config.production() if self.keyring is not None else Config.development()
        )
        if self.config.require_key and self.keyring is None:
            raise ConfigError(
                f"the {self.config.profile} profile requires a cluster key (key= or key_file=); "
                "use Config.development() to run without one",
                "key",
                "key= / key_file= / Config.key_file",
            )
        self.listen = listen or self.config.listen
        self.seeds = list(seeds) or list(self.config.seeds)
        chosen = choose_discovery(
            discovery,
            cluster=cluster,
            config=self.config,
            seeds=self.seeds,
            listen=self.listen,
            mdns_interfaces=mdns_interfaces,
        )
        self.discovery = chosen.discovery
        self.discovery_reason = chosen.reason
        log.info("node %s discovery: %s", self.node_id, chosen.reason)
        self.metadata = dict(metadata or {})
        self.http_listen = http
        self.advertise = advertise
        self.engine: Engine | None = None
        self.driver: Driver | None = None
        self.transport: Transport | None = None
        self.address = ""
        self.http_address = ""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id: int | None = None
        self._http: Any = None
        self._shared_states: dict[str, SharedState] = {}
        self._services: Any = None  # ClusterServices, created on first use
        # `fault_injection=True`: a PartitionGate the demo cuts over HTTP (/admin/partition)
        self.fault: PartitionGate | None = PartitionGate() if fault_injection else None

    # --- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen, start the engine and discovery, and serve HTTP if asked."""
        if self.engine is not None:
            raise NodeError("node already started")
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        loaded = self._open_store()
        gate = self.fault
        inbound = gate.incoming if gate is not None else _ungated
        self.transport = Transport(
            self.node_id,
            self.cluster,
            PROTOCOL_VERSION,
            keyring=self.keyring,
            limits=Limits(max_frame_bytes=self.config.max_frame_bytes),
            on_frame=inbound(lambda peer, body: self._require_driver().on_frame(peer, body)),
            on_peer_up=inbound(
                lambda peer, address: self._require_driver().on_peer_up(peer, address)
            ),
            on_peer_down=None,
            on_peer_lost=inbound(lambda peer: self._require_driver().on_peer_lost(peer)),
            on_refused=lambda reason, detail: self._require_driver().on_refused(reason, detail),
            on_unreachable=inbound(
                lambda peer, detail: self._require_driver().on_unreachable(peer, detail)
            ),
        )
        if gate is not None:
            gate.attach(self.transport)
        try:
            self.address = await self.transport.start(self.listen, advertise=self.advertise)
        except BaseException:
            self._close_store()
            raise
        self.engine = Engine(
            self.node_id, self.config, random.Random(), self.address, self.metadata
        )
        self.driver = Driver(self.engine, gate if gate is not None else self.transport)
        if loaded is not None:
            self._attach_store(loaded)
        self.driver.start()
        if self.discovery is not None:
            me = Announcement(self.cluster, self.node_id, self.address, PROTOCOL_VERSION)
            self._spawn(self.discovery.run(me, self._found), "discovery")
        if self.http_listen:
            from foundation_p2p.runtime.http import serve

            self._http, self.http_address = await serve(self, self.http_listen)
        log.info("node %s of cluster %r listening on %s", self.node_id, self.cluster, self.address)

    async def stop(self, leave: bool = True) -> None:
        """Leave gracefully (unless `leave=False`), then close everything."""
        if self.engine is None or self.driver is None or self.transport is None:
            return
        if self._services is not None:
            self._services.close()
            self._services = None
        if leave:
            self.driver.leave()
            await asyncio.sleep(0.05)  # let the farewell frames reach the socket
        self.driver.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.discovery is not None:
            await self.discovery.close()
        if self._http is not None:
            await self._http.cleanup()
            self._http = None
        await self.transport.close()
        self._close_store()
        self.engine = None

    # --- the application's view ---------------------------------------------------------------

    def replica(self, name: str, cls: type[Any], **options: Any) -> ReplicaHandle[Any]:
        """A live handle on replica `name`; its mutators write locally and replicate."""
        engine, driver = self._require_engine(), self._require_driver()
        crdt = engine.replica(name, cls, **options)
        return ReplicaHandle(
            name,
            crdt,
            driver.local_write,
            lambda: engine.timestamp(time.time()),
            self._check_loop_thread,
        )

    def members(self) -> dict[str, Status]:
        """`{node_id: "alive"|"suspect"|"dead"|"left"}`, this node included."""
        return self._require_engine().members()

    def shared_state(self, name: str, layout: str | None = None) -> SharedState:
        """The SharedState `name` on this node: the same object every time, usable before
        start (its methods need the node running); `layout` "map" (default) or "kv"."""
        state = self._shared_states.get(name)
        if state is None:
            created = SharedState._create(name, NodeHost(self, self._flush_durable_for_state))
            state = self._shared_states.setdefault(name, created)
        return with_layout(state, layout)

    async def _flush_durable_for_state(self) -> None:
        flush = getattr(self, "flush_durable", None)
        if getattr(self, "data_dir", None) is None or flush is None:
            raise NodeError("durable=True needs a node with a data directory (Node(data_dir=...))")
        await flush()

    def on_member_change(self, callback: Callable[[MemberEvent], object]) -> Callable[[], None]:
        """Call `callback(event)` on MemberUp/Suspect/Down/Left; returns an unsubscribe function."""

        def listener(event: Event) -> None:
            if isinstance(event, MemberUp | MemberSuspect | MemberDown | MemberLeft):
                callback(event)

        return self._require_driver().subscribe(listener)

    async def join(self, address: str, timeout: float = 5.0) -> str:
        """Dial a peer by address now; return its node id."""
        transport = self._require_transport()
        return await transport.connect(address, timeout=timeout)

    async def leave(self) -> None:
        """Leave the cluster gracefully and stop."""
        await self.stop(leave=True)

    @property
    def observer(self) -> Observer | None:
        """What this node observed (traffic, member history, replication lag); None if stopped."""
        return self.driver.observer if self.driver is not None and self.engine else None

    @property
    def open_caches(self) -> dict[str, Cache]:
        """The caches opened so far, by name (reading this opens none)."""
        services = getattr(self, "_services", None)
        return dict(getattr(services, "caches", {})) if services is not None else {}

    @property
    def counters(self) -> dict[str, int]:
        """The engine's counters (refusals, probes, rounds, ...)."""
        return dict(self._require_engine().counters)

    # --- persistence --------------------------------------------------------------------------

    async def flush_durable(self) -> None:
        """Return once every local write so far is committed to disk (needs a data_dir)."""
        if self.journal is None:
            raise NodeError("durable writes need a node with a data_dir (and started)")
        await self.journal.flush()

    def backup_bytes(self) -> bytes:
        """A consistent backup of every replica (with digests), as bytes; see `backup`."""
        engine = self._require_engine()
        self._check_loop_thread()
        peers = {n: m.address for n, m in engine.membership.table.items() if n != self.node_id}
        return backup_bytes(iter_replicas(engine), self.node_id, self.cluster, peers)

    async def backup(self, path: str | Path) -> BackupInfo:
        """Write a consistent backup of every replica to `path` (atomically); its summary."""
        data = self.backup_bytes()
        await asyncio.to_thread(write_backup_file, path, data)
        return read_backup(path, data)[1]

    @staticmethod
    def restore(
        backup: str | Path,
        data_dir: str | Path,
        node_id: str | None = None,
        overwrite: bool = False,
    ) -> BackupInfo:
        """Create `data_dir` from a backup; `Node(data_dir=...)` then starts from its replicas."""
        return restore_backup(backup, data_dir, node_id=node_id, overwrite=overwrite)

    def _open_store(self) -> Loaded | None:
        if self.data_dir is None:
            return None
        self._store = Store(self.data_dir, on_corrupt=self.on_corrupt)
        loaded = self._store.open()
        if loaded.cluster is not None and loaded.cluster != self.cluster:
            self._close_store()
            raise PersistenceError(
                self.data_dir,
                f"data dir belongs to cluster {loaded.cluster!r}, not {self.cluster!r}",
            )
        return loaded

    def _attach_store(self, loaded: Loaded) -> None:
        """Restore replicas and incarnation before the node talks; journal writes from now on."""
        engine, driver, store = self._require_engine(), self._require_driver(), self._store
        assert store is not None
        restore_into(engine, loaded)
        if loaded.node_id == self.node_id and loaded.incarnation:
            # rejoin above whatever incarnation peers last saw (dead, suspect or left)
            engine.membership.incarnation = loaded.incarnation
            engine.membership.refute(loaded.incarnation)
        if store.moved_aside:
            engine.counters["persistence.corrupt_moved_aside"] += 1
        engine.counters["persistence.restored_replicas"] += len(loaded.replicas)
        self.journal = Journal(store, engine, self.cluster, self.config, self.durability)
        self.journal.mark_changed(loaded.logged)  # the next snapshot must cover replayed rows
        driver.journal = self.journal.record
        driver.subscribe(self.journal.on_event)
        self.journal.start()
        # the persisted peers are members again (until probes say otherwise), so a node that
        # restarts cut off never takes the few members it meets for the whole cluster
        engine.membership.restore(driver.clock(), dict(loaded.peers))
        for node, address in loaded.peers.items():  # extra join candidates
            self._found(Candidate(address, node))
        log.info(
            "node %s restored %d replicas (%d log rows) from %s, incarnation %d",
            self.node_id,
            len(loaded.replicas),
            loaded.log_rows,
            store.path,
            engine.incarnation,
        )

    def _close_store(self) -> None:
        journal, self.journal = self.journal, None
        store, self._store = self._store, None
        if journal is not None:
            try:
                journal.close()
            except PersistenceError as exc:  # the log still holds every committed write
                log.error("final snapshot failed: %s", exc)
        elif store is not None:
            store.close()

    # --- cluster services: registry, messaging, cache, placement ----------------------------

    @property
    def registry(self) -> Registry:
        """The service registry: register instances, look them up, pick one."""
        return self._cluster_services().registry

    @property
    def pubsub(self) -> PubSub:
        """Publish/subscribe across the cluster."""
        return self._cluster_services().messaging.pubsub

    async def send(self, service: str, message: Any, **options: Any) -> None:
        """Fire-and-forget `message` to one instance of `service` (see Messaging.send)."""
        await self._cluster_services().messaging.send(service, message, **options)

    async def call(
        self, service: str, request: Any, timeout: float = 1.0, retries: int = 1, **options: Any
    ) -> Any:
        """Request/response with one instance of `service` (see Messaging.call)."""
        return await self._cluster_services().messaging.call(
            service, request, timeout=timeout, retries=retries, **options
        )

    @property
    def cache(self) -> Cache:
        """The default cache (mode "replicated"); open_cache() opens others."""
        return self._cluster_services().cache("default")

    def open_cache(self, name: str, **options: Any) -> Cache:
        """The cache `name` (mode="local"|"replicated"|"partitioned", max_entries=...)."""
        return self._cluster_services().cache(name, **options)

    def singleton(self, name: str, run: Any, **options: Any) -> Singleton:
        """Run `await run()` on exactly one connected member (quorum=, on_conflict=)."""
        return self._cluster_services().placement.singleton(name, run, **options)

    def spread(self, name: str, count: int, run: Any) -> Spread:
        """Run `count` workers `await run(index)` spread evenly over the cluster."""
        return self._cluster_services().placement.spread(name, count, run)

    def _cluster_services(self) -> ClusterServices:
        self._check_loop_thread()
        if self._services is None:
            from foundation_p2p.services.cluster_services import ClusterServices

            self._services = ClusterServices(self)
        return self._services  # type: ignore[no-any-return]

    # --- internals ----------------------------------------------------------------------------

    def _found(self, candidate: Candidate) -> None:
        transport = self.transport
        if transport is None or candidate.address == self.address:
            return
        if candidate.node_id is not None and candidate.node_id in transport.peers():
            return
        if candidate.address in transport.peers().values():
            return
        self._spawn(self._dial(candidate.address), f"dial {candidate.address}")

    async def _dial(self, address: str) -> None:
        transport = self.transport
        if transport is None:
            return
        try:
            await transport.connect(address, timeout=5.0)
        except Exception as exc:  # a candidate that does not answer is normal
            log.debug("could not reach candidate %s: %s", address, exc)

    def _spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _check_loop_thread(self) -> None:
        if self._thread_id is not None and threading.get_ident() != self._thread_id:
            raise NodeError(
                "replicas of an asyncio Node are used from its event-loop thread only; "
                "from other threads use foundation_p2p.start(), whose handles are thread-safe"
            )

    def _require_engine(self) -> Engine:
        if self.engine is None:
            raise NodeError("node is not started: use `async with Node(...)` or `await start()`")
        return self.engine

    def _require_driver(self) -> Driver:
        if self.driver is None:
            raise NodeError("node is not started")
        return self.driver

    def _require_transport(self) -> Transport:
        if self.transport is None:
            raise NodeError("node is not started")
        return self.transport


def _ungated(deliver: Callable[..., None]) -> Callable[..., None]:
    return deliver


def _keyring(key: bytes | str | None, key_file: str | Path | None) -> Keyring | None:
    if key is not None and key_file is not None:
        raise ConfigError("give key= or key_file=, not both")
    if key_file is not None:
        key = load_key_file(key_file)
    if key is None:
        return None
    keyring = Keyring()
    keyring.install(key)
    keyring.use(key)
    return keyring
