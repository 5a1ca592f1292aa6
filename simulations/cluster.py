"""SimCluster: many real Engines on one virtual clock and one modelled network.

Discrete events: a heap of (time, seq, event) and one seeded RNG, so a seed replays exactly.
Every message is encoded and decoded by the real codec on its way, so byte counts are real.
"""

from __future__ import annotations

import gc
import hashlib
import heapq
import random
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from crdts.ydoc import YDoc, update_clocks
from foundation_p2p.config import Config
from foundation_p2p.engine import (
    Engine,
    Event,
    MemberDown,
    MemberSuspect,
    MemberUp,
    Output,
    ProtocolErrorEvent,
    RemoteProtocolError,
    ReplicaChanged,
    Send,
    decode,
    encode,
)
from foundation_p2p.engine.messages import Message
from foundation_p2p.services.replicas import ReplicaHandle
from foundation_p2p.services.state import SharedState, with_layout
from simulations.network import Dist, Link, Network

_TICK, _DELIVER, _CALL = 0, 1, 2
T = TypeVar("T")


@dataclass(slots=True)
class WriteRecord:
    """One application write made through a replica handle."""

    time: float
    node: str
    replica: str
    delta: Any
    lost: bool = False
    """True once every node that held the write restarted empty (never acknowledged durable)."""


@dataclass(slots=True)
class TimelinePoint:
    """How converged the cluster was at one instant."""

    time: float
    members_agreeing: float
    replicas_equal: float
    faulty: bool


@dataclass(slots=True)
class _NodeStats:
    sent: int = 0
    received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    dropped: int = 0


class SimNode:
    """One simulated node: a real Engine, up or crashed, with the application's handles."""

    def __init__(self, cluster: SimCluster, node_id: str) -> None:
        self.cluster = cluster
        self.node_id = node_id
        self.engine = cluster._new_engine(node_id)
        self.up = True
        self.generation = 0
        self.tick_at: float | None = None
        self.events: list[tuple[float, Event]] = []
        self._handles: dict[str, ReplicaHandle[Any]] = {}
        self._states: dict[str, SharedState] = {}
        self._listeners: list[Callable[[Event], None]] = []

    def replica(self, name: str, cls: type[Any], **options: Any) -> ReplicaHandle[Any]:
        """A live handle on replica `name`: mutators write locally and replicate."""
        crdt = self.engine.replica(name, cls, **options)
        handle = self._handles.get(name)
        if handle is None or handle.crdt is not crdt:
            handle = ReplicaHandle(
                name,
                crdt,
                self._write,
                lambda: self.engine.timestamp(self.cluster.now),
                self._check_up,
            )
            self._handles[name] = handle
        return handle

    def shared_state(self, name: str, layout: str | None = None) -> SharedState:
        """The node's SharedState `name` (the same object every time, across restarts;
        `layout` "map" or "kv"). Its async methods run on the virtual clock:
        `sim.complete(state.synced(timeout=2.0))`."""
        state = self._states.get(name)
        if state is None:
            state = self._states[name] = SharedState._create(name, SimStateHost(self))
        return with_layout(state, layout)

    def members(self) -> dict[str, str]:
        """This node's view: `{node_id: status}`."""
        return dict(self.engine.members())

    def _check_up(self) -> None:
        if not self.up:
            raise RuntimeError(f"node {self.node_id} is crashed; it cannot write")

    def _write(self, name: str, delta: Any) -> None:
        self.cluster._record_write(self, name, delta)

    def __repr__(self) -> str:
        return f"SimNode({self.node_id!r}, {'up' if self.up else 'down'})"


class VirtualWaiter:
    """A SharedState wait on the virtual clock; SimCluster.complete() runs the simulation
    until it is woken or its deadline passes."""

    __slots__ = ("deadline", "woken")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.woken = False

    def wake(self) -> None:
        """Resolve the wait."""
        self.woken = True

    def wait(self) -> VirtualWaiter:
        """Awaitable: True once woken, False at the deadline."""
        return self

    def __await__(self) -> Generator[VirtualWaiter, None, bool]:
        yield self
        return self.woken


async def _done() -> None:
    return None


class SimStateHost:
    """A simulated node as the host of SharedStates: one thread, the virtual clock, no disk
    (`restart(keep_state=True)` models a node that persisted its state)."""

    def __init__(self, node: SimNode) -> None:
        self.node = node
        self.config = node.cluster.config

    def engine(self) -> Engine:
        """The node's current engine (a restart replaces it)."""
        return self.node.engine

    def on_owner(self) -> bool:
        """Always: the simulator has one thread."""
        return True

    def call(self, function: Callable[[], T]) -> T:
        """Run `function` now: the simulator has one thread."""
        return function()

    def run(self, coroutine: Awaitable[T]) -> Awaitable[T]:
        """The coroutine itself; SimCluster.complete() drives it."""
        return coroutine

    def writable(self) -> None:
        """RuntimeError on a crashed node."""
        self.node._check_up()

    def write(self, replica: str, delta: bytes) -> int:
        """A recorded local write, handed to the engine; its write number."""
        self.node.cluster._record_write(self.node, replica, delta)
        return self.node.engine.write_seq

    def subscribe(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """Call `listener` with each of the node's engine events."""
        listeners = self.node._listeners
        listeners.append(listener)
        return lambda: listeners.remove(listener) if listener in listeners else None

    def waiter(self, timeout: float) -> VirtualWaiter:
        """A wait ending `timeout` virtual seconds from now."""
        return VirtualWaiter(self.node.cluster.now + timeout)

    def flush_durable(self) -> Awaitable[None]:
        """Nothing to wait for: the simulator has no disk."""
        return _done()

    def soon(self, callback: Callable[[], None]) -> bool:
        """No batching in the simulator: every write is its own delta, recorded as such."""
        return False


class SimCluster:
    """A deterministic cluster of Engines under a virtual clock, with fault verbs.

    bootstrap: "seed" (every node joins the first), "all" (every node joins every other),
    "formed" (every node starts knowing all others, as from a persisted peer list) or "none".
    decode: pass every message through the real decoder (the default); False delivers the
    sender's message object after encoding it (byte counts and trace stay exact, the
    receiver's parsing is skipped), for large benchmark runs. record_events: keep every
    engine event in `SimNode.events` (False for large runs: a 1,000-node partition and heal
    makes millions; detection and false-positive stats are kept either way).
    """

    def __init__(
        self,
        nodes: int | Iterable[str] = 3,
        seed: int = 0,
        config: Config | None = None,
        link: Link | None = None,
        bootstrap: str = "seed",
        timeline_interval: float | None = None,
        record_writes: bool = True,
        decode: bool = True,
        record_events: bool = True,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.config = config or Config.simulation()
        self.network = Network(link or Link(latency=Dist.uniform(0.0005, 0.002)))
        self.now = 0.0
        self.record_writes = record_writes
        self.record_events = record_events
        self.decode = decode
        self.on_deliver: Callable[[float, str, str, Message], None] | None = None
        """Called for every delivered message (for instrumentation in benchmarks)."""
        self.writes: list[WriteRecord] = []
        self.crashed_at: dict[str, float] = {}
        self.detections: dict[str, dict[str, float]] = defaultdict(dict)
        self.false_downs: list[tuple[float, str, str]] = []
        self.false_suspicions: list[tuple[float, str, str]] = []
        self.protocol_errors: Counter[str] = Counter()
        self.timeline: list[TimelinePoint] = []
        self._timeline_interval = timeline_interval
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self._trace = hashlib.blake2b(digest_size=16)
        self._stats: dict[str, _NodeStats] = defaultdict(_NodeStats)
        self._fifo: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], list[tuple[str, str, bytes, Message, int]]] = {}
        ids = [f"n{i}" for i in range(nodes)] if isinstance(nodes, int) else list(nodes)
        if len(set(ids)) != len(ids) or not ids:
            raise ValueError("node ids must be unique and at least one")
        self.nodes: dict[str, SimNode] = {}
        for node_id in ids:
            self.nodes[node_id] = SimNode(self, node_id)
        for node in self.nodes.values():
            self._schedule_tick(node, 0.0)
        if bootstrap == "seed":
            for node_id in ids[1:]:
                self._process(
                    self.nodes[node_id], self.nodes[node_id].engine.join(0.0, ids[0], ids[0])
                )
        elif bootstrap == "all":
            for node_id in ids:
                for other in ids:
                    if other != node_id:
                        engine = self.nodes[node_id].engine
                        self._process(self.nodes[node_id], engine.join(0.0, other, other))
        elif bootstrap == "formed":  # as if restarted from a persisted peer list
            everyone = {node_id: node_id for node_id in ids}
            for node in self.nodes.values():
                node.engine.membership.restore(0.0, everyone)
        elif bootstrap != "none":
            raise ValueError(
                f"bootstrap must be 'seed', 'all', 'formed' or 'none', got {bootstrap!r}"
            )
        if timeline_interval:
            self.at(0.0, self._sample_timeline)

    # --- nodes ------------------------------------------------------------------------------

    def node(self, node_id: str) -> SimNode:
        """The node with this id."""
        try:
            return self.nodes[node_id]
        except KeyError:
            raise KeyError(f"no node {node_id!r}; nodes are {', '.join(self.nodes)}") from None

    def live_nodes(self) -> list[SimNode]:
        """Nodes that are up."""
        return [n for n in self.nodes.values() if n.up]

    def _new_engine(self, node_id: str) -> Engine:
        return Engine(node_id, self.config, random.Random(self.rng.getrandbits(64)), node_id)

    # --- running ----------------------------------------------------------------------------

    def run_for(self, seconds: float) -> None:
        """Advance virtual time by `seconds`, processing every event due."""
        self._run_to(self.now + seconds)

    def run_to(self, when: float) -> None:
        """Advance virtual time to exactly `when` (if later), processing every event due by then."""
        # Not run_for(when - now): the float sum can land a hair before `when` and leave an
        # event scheduled at `when` unfired.
        self._run_to(max(self.now, when))

    def run_until(
        self, predicate: Callable[[SimCluster], bool], timeout: float = 60.0, step: float = 0.1
    ) -> bool:
        """Run until `predicate(self)` holds (checked every `step`); False after `timeout`."""
        deadline = self.now + timeout
        while True:
            if predicate(self):
                return True
            if self.now >= deadline:
                return False
            self._run_to(min(deadline, self.now + step))

    def complete(self, awaitable: Awaitable[T]) -> T:
        """Run the simulation until `awaitable` — a SharedState's `synced()`, `set(...)` or
        `wait_for(...)` — is done, and return its result (or raise its exception)."""
        steps = awaitable.__await__()
        while True:
            try:
                waiter = steps.send(None)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            if not isinstance(waiter, VirtualWaiter):
                steps.close()
                raise TypeError(f"only simulator waits can run on the virtual clock: {waiter!r}")
            self._run_until_woken(waiter)

    def _run_until_woken(self, waiter: VirtualWaiter) -> None:
        heap = self._heap
        while not waiter.woken and heap and heap[0][0] <= waiter.deadline:
            self._run_to(heap[0][0])
        if not waiter.woken:
            self.now = max(self.now, waiter.deadline)

    def at(self, when: float, action: Callable[[], object]) -> None:
        """Schedule `action()` at virtual time `when` (for fault schedules)."""
        self._push(max(when, self.now), _CALL, action)

    def _run_to(self, end: float) -> None:
        # The engines' messages, rumours and events make no reference cycles, but a large
        # cluster holds millions of long-lived objects that every full collection would walk
        # (15% of a 1,000-node run): collect only between runs.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._run_events(end)
        finally:
            if collecting:
                gc.enable()
        self.now = max(self.now, end)

    def _run_events(self, end: float) -> None:
        heap = self._heap
        pop = heapq.heappop
        deliver = self._deliver
        while heap and heap[0][0] <= end:
            when, _, kind, payload = pop(heap)
            if when > self.now:
                self.now = when
            if kind == _DELIVER:
                deliver(*payload)
            elif kind == _TICK:
                node, generation = payload
                if node.up and node.generation == generation and node.tick_at == when:
                    node.tick_at = None
                    self._process(node, node.engine.tick(self.now))
            else:
                payload()

    def _push(self, when: float, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, kind, payload))

    def _schedule_tick(self, node: SimNode, when: float) -> None:
        if node.tick_at is None or when < node.tick_at:
            node.tick_at = when
            self._push(when, _TICK, (node, node.generation))

    def _process(self, node: SimNode, outputs: list[Output]) -> None:
        sent: Message | None = None
        body = b""
        for output in outputs:
            if type(output) is Send:
                message = output.message
                if message is not sent:  # a push to several peers is encoded once
                    sent, body = message, encode(message)
                self._send(node.node_id, output.dst, message, body)
            else:
                self._observe(node, output)  # type: ignore[arg-type]
        deadline = node.engine.next_deadline()
        if deadline is not None and node.up:
            when = deadline if deadline > self.now else self.now
            if node.tick_at is None or when < node.tick_at:
                node.tick_at = when
                self._push(when, _TICK, (node, node.generation))

    def _observe(self, node: SimNode, event: Event) -> None:
        if self.record_events:
            node.events.append((self.now, event))
        if node._listeners:
            for listener in list(node._listeners):
                listener(event)
        kind = type(event)
        if kind is MemberUp or kind is ReplicaChanged:
            return
        if isinstance(event, MemberDown):
            target = self.nodes.get(event.node)
            if event.node in self.crashed_at and target is not None and not target.up:
                self.detections[event.node].setdefault(node.node_id, self.now)
            elif target is not None and target.up and not self.network.faulty:
                self.false_downs.append((self.now, node.node_id, event.node))
        elif isinstance(event, MemberSuspect):
            target = self.nodes.get(event.node)
            if target is not None and target.up and not self.network.faulty:
                self.false_suspicions.append((self.now, node.node_id, event.node))
        elif isinstance(event, ProtocolErrorEvent):
            self.protocol_errors[event.reason] += 1

    # --- the network ------------------------------------------------------------------------

    def _send(self, src: str, dst: str, message: Message, body: bytes) -> None:
        stats = self._stats[src]
        stats.sent += 1
        stats.bytes_sent += len(body)
        target = self.nodes.get(dst)
        network = self.network
        link = None if target is None else network.route(src, dst)
        if link is None or target is None:
            stats.dropped += 1
            return
        rng = self.rng
        if link.loss and rng.random() < link.loss:
            stats.dropped += 1
            return
        copies = 2 if link.duplicate and rng.random() < link.duplicate else 1
        for _ in range(copies):
            if network.holding and network.is_held(src, dst):
                self._held.setdefault((src, dst), []).append(
                    (src, dst, body, message, target.generation)
                )
                continue
            when = self.now + link.latency.sample(rng)
            if not link.reorder:
                route = (src, dst)
                last = self._fifo.get(route, 0.0)
                if last > when:
                    when = last
                self._fifo[route] = when
            self._seq += 1
            heapq.heappush(
                self._heap,
                (when, self._seq, _DELIVER, (src, dst, body, message, target.generation)),
            )

    def _deliver(self, src: str, dst: str, body: bytes, message: Message, generation: int) -> None:
        node = self.nodes[dst]
        if not node.up or node.generation != generation:
            return
        stats = self._stats[dst]
        stats.received += 1
        stats.bytes_received += len(body)
        trace = self._trace
        trace.update(f"{self.now:.9f}|{src}|{dst}|".encode())
        trace.update(body)
        if self.on_deliver is not None:
            self.on_deliver(self.now, src, dst, message)
        decoded = message
        if self.decode:
            try:
                decoded = decode(body)
            except RemoteProtocolError as exc:  # only a codec bug gets here: it made these bytes
                self._process(node, node.engine.refuse(src, exc))
                return
        self._process(node, node.engine.receive(self.now, src, decoded))

    # --- faults -----------------------------------------------------------------------------

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the cluster: nodes in different groups cannot reach each other."""
        self.network.partition([list(g) for g in groups])

    def partition_oneway(self, sources: Iterable[str], destinations: Iterable[str]) -> None:
        """Cut messages from `sources` to `destinations` only."""
        self.network.partition_oneway(sources, destinations)

    def heal(self) -> None:
        """End every partition and one-way cut, and release held links."""
        self.network.heal()
        for src, dst in list(self._held):
            self.release(src, dst)

    def set_link(self, a: str, b: str, both_ways: bool = True, **changes: Any) -> None:
        """Change latency (a Dist), loss, duplicate or reorder on a link (both ways by default)."""
        self.network.set_link(a, b, **changes)
        if both_ways:
            self.network.set_link(b, a, **changes)

    def set_loss(self, loss: float) -> None:
        """Packet loss on every link that has not been set individually."""
        self.network.default = Link(
            self.network.default.latency,
            loss,
            self.network.default.duplicate,
            self.network.default.reorder,
        )

    def hold(self, src: str, dst: str) -> None:
        """Hold messages on src -> dst until release()."""
        self.network.hold(src, dst)

    def release(self, src: str, dst: str) -> None:
        """Deliver what was held on src -> dst, and stop holding it."""
        self.network.release(src, dst)
        for item in self._held.pop((src, dst), []):
            link = self.network.link(src, dst)
            self._push(self.now + link.latency.sample(self.rng), _DELIVER, item)

    def crash(self, node_id: str) -> None:
        """Stop a node at once: it sends and receives nothing until restart()."""
        node = self.node(node_id)
        if not node.up:
            return
        node.up = False
        node.generation += 1
        node.tick_at = None
        self.crashed_at[node_id] = self.now
        self.detections.pop(node_id, None)

    def restart(self, node_id: str, keep_state: bool = False) -> None:
        """Start a crashed node again, empty or with its replicas (as if persisted), and rejoin."""
        node = self.node(node_id)
        if node.up:
            raise ValueError(f"node {node_id} is up; crash it first")
        old = node.engine
        if not keep_state:
            self._mark_lost_writes(node_id)
        node.engine = self._new_engine(node_id)
        if keep_state:
            node.engine.replication.replicas = old.replication.replicas
            node.engine.membership.incarnation = old.incarnation
            node.engine.membership.refute(old.incarnation)
            # as a node with a data dir: its persisted peer list (the last table but departed
            # members) is known again, so a restart never takes a fragment for the cluster
            persisted = {
                n: m.address or n
                for n, m in old.membership.table.items()
                if n != node_id and m.status != "left"
            }
            node.engine.membership.restore(self.now, persisted)
        node._handles.clear()
        node.up = True
        node.generation += 1
        self.crashed_at.pop(node_id, None)
        self._schedule_tick(node, self.now)
        peers = [n.node_id for n in self.live_nodes() if n.node_id != node_id]
        if peers:
            seed = self.rng.choice(peers)
            self._process(node, node.engine.join(self.now, seed, seed))

    def _mark_lost_writes(self, wiped: str) -> None:
        """Writes that only the wiped node held are gone with it: the checkers skip them."""
        holders = [n.engine for n in self.nodes.values() if n.node_id != wiped]
        for write in self.writes:
            if not write.lost and not any(_includes(e, write) for e in holders):
                write.lost = True

    def leave(self, node_id: str) -> None:
        """Leave gracefully, then stop the node."""
        node = self.node(node_id)
        self._process(node, node.engine.leave(self.now))
        node.up = False
        node.generation += 1

    # --- writes and checks ------------------------------------------------------------------

    def _record_write(self, node: SimNode, name: str, delta: Any) -> None:
        if self.record_writes:
            copy = delta if isinstance(delta, bytes) else delta.copy()
            self.writes.append(WriteRecord(self.now, node.node_id, name, copy))
        self._process(node, node.engine.local_write(name, delta, self.now))

    def converged(self) -> bool:
        """Every live node's replicas are equal and every live node's membership view agrees."""
        from simulations.invariants import memberships_agree, replicas_equal

        return not replicas_equal(self) and not memberships_agree(self)

    def trace_digest(self) -> str:
        """A hash of every delivery so far (time, route, bytes): same seed, same digest."""
        return self._trace.hexdigest()

    def stats(self) -> dict[str, Any]:
        """Traffic per node per virtual second, failure-detection latency and false positives."""
        elapsed = max(self.now, 1e-9)
        per_node = {
            node_id: {
                "messages_per_s": s.sent / elapsed,
                "bytes_per_s": s.bytes_sent / elapsed,
                "sent": s.sent,
                "received": s.received,
                "dropped": s.dropped,
            }
            for node_id, s in sorted(self._stats.items())
        }
        total_sent = sum(s.sent for s in self._stats.values())
        total_bytes = sum(s.bytes_sent for s in self._stats.values())
        detection = {}
        for crashed, seen in self.detections.items():
            if crashed in self.crashed_at and seen:
                live = [n.node_id for n in self.live_nodes()]
                start = self.crashed_at[crashed]
                detection[crashed] = {
                    "first": min(seen.values()) - start,
                    "all": max(seen.values()) - start if all(n in seen for n in live) else None,
                }
        return {
            "virtual_seconds": self.now,
            "nodes": len(self.nodes),
            "messages": total_sent,
            "bytes": total_bytes,
            "messages_per_node_per_s": total_sent / elapsed / max(1, len(self.nodes)),
            "bytes_per_node_per_s": total_bytes / elapsed / max(1, len(self.nodes)),
            "per_node": per_node,
            "detection": detection,
            "false_downs": len(self.false_downs),
            "false_suspicions": len(self.false_suspicions),
            "protocol_errors": dict(self.protocol_errors),
        }

    def _sample_timeline(self) -> None:
        from simulations.invariants import agreement_fraction, equality_fraction

        self.timeline.append(
            TimelinePoint(
                self.now, agreement_fraction(self), equality_fraction(self), self.network.faulty
            )
        )
        if self._timeline_interval:
            self.at(self.now + self._timeline_interval, self._sample_timeline)


def _includes(engine: Engine, write: WriteRecord) -> bool:
    """Whether an engine's replica already contains a write's delta."""
    replica = engine.replication.replicas.get(write.replica)
    if replica is None:
        return False
    if isinstance(replica, YDoc):  # an update waiting for a dependency is not held yet
        have = replica.clocks()
        if any(have.get(client, 0) < clock for client, clock in update_clocks(write.delta).items()):
            return False
    probe = replica.copy()
    probe.merge(write.delta)
    return bool(probe == replica)
