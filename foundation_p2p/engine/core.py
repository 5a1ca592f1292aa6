"""The protocol engine: membership, failure detection and replication as one sans-IO machine.

Rules of this file: the engine knows nothing of sockets, clocks or global randomness. Time
arrives as `now` (seconds) on every call, randomness from the `rng` it was given, messages as
decoded objects. Every call returns the outputs it produced: `Send`s for the driver to deliver
and events for the driver to report. Both drivers — the asyncio node and the simulator — call
exactly these methods, so what the simulator shows is what the node does.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from typing import Any

from crdts import HLC, LWWMap, Status, Timestamp
from foundation_p2p.config import Config
from foundation_p2p.engine.errors import LocalProtocolError, RemoteProtocolError
from foundation_p2p.engine.events import AppReceived, Outbox, Output, ProtocolErrorEvent, Send
from foundation_p2p.engine.membership import Membership
from foundation_p2p.engine.messages import (
    Ack,
    AppMessage,
    Gossip,
    Message,
    Ping,
    PingReq,
    PushAck,
    SyncDelta,
    SyncDigest,
)
from foundation_p2p.engine.replication import MEMBERS, Replication

_RECEIVED: dict[type, str] = {}  # message type -> its "received." counter key


class Engine:
    """One node's protocol state machine."""

    def __init__(
        self,
        node_id: str,
        config: Config | None = None,
        rng: random.Random | None = None,
        address: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if type(node_id) is not str or not node_id:
            raise LocalProtocolError(f"node_id must be a non-empty str, got {node_id!r}")
        self.node_id = node_id
        self.config = config or Config.production()
        self.rng = rng if rng is not None else random.Random(node_id)
        self.counters: Counter[str] = Counter()
        self.clock = HLC(node_id, max_drift_ms=int(self.config.max_clock_drift * 1000))
        self._outbox = Outbox()
        self.last_heard: dict[str, float] = {}
        """When a message last came from each peer (singleton quorums count recent contact)."""
        self._now = 0.0
        self.membership = Membership(
            node_id,
            address,
            metadata or {},
            self.config,
            self.rng,
            self._outbox,
            self.counters,
            self._refused,
        )
        self.replication = Replication(
            node_id,
            self.config,
            self.rng,
            self._outbox,
            self.counters,
            self.membership,
            self.clock,
            self._refused,
        )

    # --- the driver's interface ------------------------------------------------------------

    def tick(self, now: float) -> list[Output]:
        """Run the timers due at `now`: probes, suspicion timeouts, gossip, pushes, anti-entropy."""
        self._now = max(self._now, now)
        self.membership.tick(now)
        if not self.membership.leaving:
            self.replication.tick(now)
        return self._outbox.drain()

    def receive(self, now: float, src: str, message: Message) -> list[Output]:
        """Handle a decoded message from peer `src`."""
        self._now = max(self._now, now)
        kind = type(message)
        counter = _RECEIVED.get(kind)
        if counter is None:
            counter = _RECEIVED[kind] = f"received.{kind.__name__}"
        self.counters[counter] += 1
        if self.membership.leaving:
            return self._outbox.drain()
        try:
            if type(src) is not str or not src:
                raise RemoteProtocolError("malformed", f"bad source id {src!r}")
            if src == self.node_id:
                raise RemoteProtocolError("self_source", "a message claims to come from us")
            self.membership.heard_from(now, src)
            self.last_heard[src] = now
            rumours = getattr(message, "rumours", ())
            if rumours:
                self.membership.apply_rumours(now, src, rumours)
            if isinstance(message, Ping | Ack | PingReq):
                self.membership.receive(now, src, message)
            elif isinstance(message, SyncDigest):
                self.replication.receive_digest(now, src, message)
            elif isinstance(message, SyncDelta):
                self.replication.receive_delta(now, src, message)
            elif isinstance(message, PushAck):
                self.replication.receive_push_ack(src, message)
            elif isinstance(message, AppMessage):
                self._outbox.emit(AppReceived(src, message))
            elif not isinstance(message, Gossip):
                raise RemoteProtocolError("unknown_type", f"{type(message).__name__}")
        except RemoteProtocolError as exc:
            self._refused(src, exc)
        return self._outbox.drain()

    def refuse(self, src: str, error: RemoteProtocolError) -> list[Output]:
        """Record a message the driver could not even decode (counted like any refusal)."""
        self._refused(src, error)
        return self._outbox.drain()

    def peer_disconnected(self, now: float, peer: str) -> list[Output]:
        """The driver's connection to `peer` closed: probe it at once."""
        self._now = max(self._now, now)
        self.membership.peer_disconnected(now, peer)
        return self._outbox.drain()

    def peer_unreachable(self, now: float, peer: str) -> list[Output]:
        """The driver was refused a connection to `peer` (nothing listens at its address):
        suspect it at once, as evidence equal to a failed probe."""
        self._now = max(self._now, now)
        self.membership.peer_unreachable(now, peer)
        return self._outbox.drain()

    def local_write(self, replica_name: str, delta: Any, now: float | None = None) -> list[Output]:
        """Queue a delta already applied to a local replica for replication."""
        self.replication.local_write(self._now if now is None else now, replica_name, delta)
        return self._outbox.drain()

    def send_app(self, dst: str, message: AppMessage) -> list[Output]:
        """An application message for peer `dst` (the services' point-to-point path)."""
        if dst == self.node_id:
            raise LocalProtocolError("an application message to ourselves is delivered locally")
        self.counters["sent.AppMessage"] += 1
        return [Send(dst, message)]

    def next_deadline(self) -> float | None:
        """The earliest `now` at which tick() has work (None if idle)."""
        if self.membership.leaving:
            return None
        membership, replication = self.membership.next_deadline(), self.replication.next_deadline()
        if membership is None:
            return replication
        return membership if replication is None or membership <= replication else replication

    def join(self, now: float, node: str, address: str = "") -> list[Output]:
        """Contact a peer found by a seed list or discovery, and sync with it at once."""
        self._now = max(self._now, now)
        if node != self.node_id:
            self.membership.add_candidate(now, node, address)
            self.replication.start_sync(now, node)
        return self._outbox.drain()

    def leave(self, now: float) -> list[Output]:
        """Leave gracefully: tell live peers directly, then go quiet."""
        self._now = max(self._now, now)
        self.membership.leave()
        peers = self.membership.peers()
        farewell = self.membership.take_rumours()
        for peer in peers:
            self._outbox.send(peer, Gossip(farewell))
        return self._outbox.drain()

    # --- the application's view --------------------------------------------------------------

    def replica(self, name: str, cls: type[Any], **options: Any) -> Any:
        """The CRDT behind replica `name` (created if new); mutate it, then call local_write."""
        return self.replication.replica(name, cls, **options)

    def compact(self, name: str, stable_before_ms: int, expired_before_ms: int) -> int:
        """Drop an LWWMap replica's old tombstones and expired entries on this node only
        (see LWWMap.compact); return how many. LocalProtocolError for another type."""
        replica = self.replication.replicas.get(name)
        if not isinstance(replica, LWWMap):
            raise LocalProtocolError(f"replica {name!r} is not an LWWMap; only those compact")
        dropped = replica.compact(stable_before_ms, expired_before_ms)
        if dropped:
            self.replication.forget_summary(name)
        return dropped

    def members(self) -> dict[str, Status]:
        """`{node_id: "alive"|"suspect"|"dead"|"left"}`, this node included."""
        return self.membership.table.value

    def timestamp(self, now: float | None = None) -> Timestamp:
        """A hybrid-logical-clock timestamp for a local write."""
        return self.clock.now(int((self._now if now is None else now) * 1000))

    @property
    def write_seq(self) -> int:
        """The number of the latest local write (WritesAcked events refer to these numbers)."""
        return self.replication.write_seq

    @property
    def incarnation(self) -> int:
        """This node's current incarnation."""
        return self.membership.incarnation

    @property
    def members_agreed(self) -> bool:
        """Whether our member table has once equalled a peer's (we know the whole cluster)."""
        return self.replication.members_agreed

    @property
    def replica_names(self) -> list[str]:
        """Every replica this node holds, the member table included."""
        return [MEMBERS, *self.replication.replicas]

    def _refused(self, src: str, error: RemoteProtocolError) -> None:
        self.counters[f"refused.{error.reason}"] += 1
        self._outbox.emit(ProtocolErrorEvent(src, error.reason, error.detail))
