"""What a running node observes about itself: traffic, member history, replication lag.

The driver feeds an `Observer` as frames and events pass (a few counter increments each);
everything else — the health findings here, Prometheus metrics and the dashboard's overview in
`dashboard.py` (loaded only with HTTP) — is computed from it and from the engine when asked.
The observer also turns engine events into telemetry events (`foundation_p2p.telemetry`).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import msgpack

from foundation_p2p import telemetry
from foundation_p2p.engine import (
    Engine,
    Event,
    MemberDown,
    MemberLeft,
    MemberSuspect,
    MemberUp,
    ProtocolErrorEvent,
    ReplicaChanged,
)
from foundation_p2p.engine.events import WritesAcked
from foundation_p2p.engine.messages import Message, SyncDelta, SyncDigest
from foundation_p2p.engine.replication import MEMBERS, SUMMARY_TAG_SUFFIX

RECENT_EVENTS = 200
TRACKED_WRITES = 4096  # local writes remembered for the lag; older unheld ones are summarized
FLAP_WINDOW = 60.0  # seconds: a member suspected this often lately, yet alive, is flapping
FLAP_COUNT = 3
# refusal reasons that mean a misconfigured peer rather than a hostile or broken one
_MISCONFIGURED = (
    "cluster_mismatch",
    "protocol_mismatch",
    "auth_failed",
    "key_required",
    "key_unexpected",
)

_MEMBER_EVENTS: dict[type[Any], tuple[str, telemetry.EventName]] = {
    MemberUp: ("alive", telemetry.MEMBER_UP),
    MemberSuspect: ("suspect", telemetry.MEMBER_SUSPECT),
    MemberDown: ("dead", telemetry.MEMBER_DOWN),
    MemberLeft: ("left", telemetry.MEMBER_LEFT),
}


class Observer:
    """Traffic by message type, when each member last changed state and last spoke to us,
    which of our local writes each peer is known to hold, and the node's recent events."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.node_id = engine.node_id
        self.clock = clock
        self.started = clock()
        self.messages_in: Counter[str] = Counter()
        self.bytes_in: Counter[str] = Counter()
        self.messages_out: Counter[str] = Counter()
        self.bytes_out: Counter[str] = Counter()
        self.last_heard: dict[str, float] = {}
        self.member_since: dict[str, tuple[str, float]] = {}
        self.suspected_at: dict[str, deque[float]] = {}
        self.last_topology_change: float | None = None
        self.events: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self.events_seen = 0
        # our local writes, oldest first: (write number, replica, when, peers known to hold it)
        self._writes: deque[tuple[int, str, float, set[str]]] = deque()
        # (peer, replica) -> (oldest time, first and last number) of forgotten unheld writes
        self._forgotten: dict[tuple[str, str], tuple[float, int, int]] = {}
        self._acked_at: dict[str, float] = {}
        self._merge_sizes: dict[str, int] = {}
        self._replica_cache: dict[str, tuple[int, bytes]] = {}
        self._dirty: set[str] = set()

    # --- fed by the driver --------------------------------------------------------------

    def frame_in(self, peer: str, message: Message | None, size: int) -> None:
        """A frame from `peer` (None: it could not be decoded)."""
        kind = type(message).__name__ if message is not None else "undecodable"
        self.messages_in[kind] += 1
        self.bytes_in[kind] += size
        self.last_heard[peer] = self.clock()
        if type(message) is SyncDelta and telemetry.active(telemetry.REPLICA_MERGED):
            sizes: dict[str, int] = {}
            for delta in message.deltas:
                sizes[delta.name] = sizes.get(delta.name, 0) + len(delta.payload)
            self._merge_sizes = sizes

    def frame_out(self, dst: str, message: Message, size: int) -> None:
        """A frame queued for `dst`."""
        kind = type(message).__name__
        self.messages_out[kind] += 1
        self.bytes_out[kind] += size
        if kind == "SyncDigest" and telemetry.active(telemetry.ANTI_ENTROPY_ROUND):
            assert isinstance(message, SyncDigest)
            if message.reply and all(d.tag.endswith(SUMMARY_TAG_SUFFIX) for d in message.digests):
                telemetry.execute(
                    telemetry.ANTI_ENTROPY_ROUND,
                    {"replicas": len(message.digests), "bytes": size},
                    {"node": self.node_id, "peer": dst},
                )

    def event(self, event: Event) -> None:
        """An engine (or transport) event."""
        now = self.clock()
        kind = type(event)
        member_event = _MEMBER_EVENTS.get(kind)
        if member_event is not None:
            status, name = member_event
            member = event.node  # type: ignore[union-attr]
            self.member_since[member] = (status, now)
            self.last_topology_change = now
            if status == "suspect":
                times = self.suspected_at.setdefault(member, deque(maxlen=FLAP_COUNT * 4))
                times.append(now)
            self._record({"t": now, "kind": f"member_{status}", "member": member})
            if len(self.member_since) > 2 * len(self.engine.membership.table) + 16:
                self._forget_departed()
            if telemetry.active(name):
                metadata: dict[str, Any] = {"node": self.node_id, "member": member}
                if isinstance(event, MemberUp):
                    metadata["address"] = event.address
                live = self.engine.membership.cluster_size()
                telemetry.execute(name, {"live_members": live}, metadata)
        elif kind is ReplicaChanged:
            assert isinstance(event, ReplicaChanged)
            self._dirty.add(event.name)
            if event.origin == "local":
                self._record_write(self.engine.write_seq, event.name, now)
            if event.origin != "local" and telemetry.active(telemetry.REPLICA_MERGED):
                telemetry.execute(
                    telemetry.REPLICA_MERGED,
                    {"bytes": self._merge_sizes.get(event.name, 0)},
                    {"node": self.node_id, "replica": event.name, "origin": event.origin},
                )
        elif kind is WritesAcked:
            assert isinstance(event, WritesAcked)
            self._writes_held(event, now)
        elif kind is ProtocolErrorEvent:
            assert isinstance(event, ProtocolErrorEvent)
            self._record(
                {"t": now, "kind": "refused", "reason": event.reason, "src": event.src or "?"}
            )
            if telemetry.active(telemetry.FRAME_REFUSED):
                telemetry.execute(
                    telemetry.FRAME_REFUSED,
                    {"count": 1},
                    {
                        "node": self.node_id,
                        "reason": event.reason,
                        "src": event.src,
                        "detail": event.detail,
                    },
                )

    # --- read at scrape time ------------------------------------------------------------

    def replication_lag(self, now: float | None = None) -> dict[str, float]:
        """Per member (not us, not left): seconds since our oldest local write it is not known
        to hold was made; 0 when it holds every one (known from push acknowledgements and
        from anti-entropy rounds that found its copy equal to ours)."""
        now = self.clock() if now is None else now
        peers = [
            member
            for member, status in self.engine.members().items()
            if member != self.node_id and status != "left"
        ]
        oldest: dict[str, float] = {}
        for (peer, _), (since, _, _) in self._forgotten.items():
            oldest[peer] = min(since, oldest.get(peer, since))
        for _, _, made, holders in self._writes:
            for peer in peers:
                if peer not in holders and peer not in oldest:
                    oldest[peer] = made
            if len(oldest) == len(peers):
                break
        return {peer: max(0.0, now - oldest[peer]) if peer in oldest else 0.0 for peer in peers}

    def last_acked(self) -> dict[str, float]:
        """When each peer last acknowledged holding some of our writes."""
        return dict(self._acked_at)

    def replica_summary(self, name: str, replica: Any) -> tuple[int, bytes]:
        """(encoded size in bytes, fingerprint) of a replica, recomputed only after a change."""
        cached = self._replica_cache.get(name)
        if cached is None or name in self._dirty or name == MEMBERS:
            size = len(msgpack.packb(replica.to_wire(), use_bin_type=True))
            cached = (size, bytes(replica.fingerprint()))
            self._replica_cache[name] = cached
            self._dirty.discard(name)
        return cached

    def flapping(self, now: float | None = None) -> dict[str, int]:
        """Members suspected at least FLAP_COUNT times within FLAP_WINDOW seconds."""
        now = self.clock() if now is None else now
        counts = {
            member: sum(1 for t in times if now - t <= FLAP_WINDOW)
            for member, times in self.suspected_at.items()
        }
        return {member: n for member, n in counts.items() if n >= FLAP_COUNT}

    # --- internals ----------------------------------------------------------------------

    def _record(self, entry: dict[str, Any]) -> None:
        self.events_seen += 1
        entry["id"] = self.events_seen
        self.events.append(entry)

    def _forget_departed(self) -> None:
        """Drop what we keep about members the member table has forgotten (churn of ids)."""
        table = self.engine.membership.table
        for per_member in (self.member_since, self.suspected_at, self.last_heard, self._acked_at):
            for member in [m for m in per_member if m not in table]:
                del per_member[member]
        for key in [k for k in self._forgotten if k[0] not in table]:
            del self._forgotten[key]

    def _record_write(self, number: int, name: str, now: float) -> None:
        self._writes.append((number, name, now, set()))
        if len(self._writes) > TRACKED_WRITES:
            oldest, replica, made, holders = self._writes.popleft()
            for member, status in self.engine.members().items():
                if member != self.node_id and status != "left" and member not in holders:
                    key = (member, replica)
                    since, low, _ = self._forgotten.get(key, (made, oldest, oldest))
                    self._forgotten[key] = (since, low, oldest)

    def _writes_held(self, event: WritesAcked, now: float) -> None:
        """Peer `event.node` holds our writes to `event.name` numbered first..last."""
        self._acked_at[event.node] = now
        forgotten = self._forgotten.get((event.node, event.name))
        if forgotten is not None and event.first <= forgotten[1] and event.last >= forgotten[2]:
            del self._forgotten[(event.node, event.name)]
        for number, name, _, holders in self._writes:
            if number > event.last:
                break
            if number >= event.first and name == event.name:
                holders.add(event.node)
        # writes every member now holds no longer matter for the lag
        others = {m for m, s in self.engine.members().items() if m != self.node_id and s != "left"}
        while self._writes and others <= self._writes[0][3]:
            self._writes.popleft()


class ObservedNode(Protocol):
    """What the collector and the health check read from a node."""

    node_id: str
    cluster: str
    address: str

    @property
    def engine(self) -> Engine | None:
        """The running engine, None when stopped."""

    @property
    def observer(self) -> Observer | None:
        """The node's observer, None when stopped."""


def transport_counters(node: Any) -> Mapping[str, int]:
    """The transport's counters (empty when there is no transport)."""
    transport = getattr(node, "transport", None)
    return dict(getattr(transport, "counters", {}) or {})


# --- health -----------------------------------------------------------------------------


def _ago(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def silence_limit(engine: Engine) -> float:
    """How long a live peer may stay silent towards us before we call it unreachable: two
    full probe cycles over the cluster plus two anti-entropy intervals."""
    config = engine.config
    peers = max(1, len(engine.membership.peers()))
    return 2 * config.probe_interval * peers + 2 * config.anti_entropy_interval


def health_details(node: ObservedNode) -> dict[str, Any]:
    """The cluster health check as this node sees it: expected vs actual members, members
    unreachable from us (and for how long), suspected partitions, recommendations."""
    engine, observer = node.engine, node.observer
    if engine is None or observer is None:
        return {}
    now = observer.clock()
    statuses = engine.members()
    expected = [m for m, status in statuses.items() if status != "left"]
    alive = [m for m, status in statuses.items() if status == "alive"]
    unreachable: list[dict[str, Any]] = []
    partitions: list[dict[str, Any]] = []
    limit = silence_limit(engine)
    for member, status in sorted(statuses.items()):
        if member == node.node_id:
            continue
        since = observer.member_since.get(member, (status, observer.started))[1]
        if status in ("suspect", "dead"):
            unreachable.append({"member": member, "status": status, "for": now - since})
        elif status == "alive":
            heard = observer.last_heard.get(member, max(since, observer.started))
            silent = now - heard
            if silent > limit:
                entry = {"member": member, "status": "alive", "silent_for": silent}
                partitions.append({**entry, "reason": "reported alive by others, silent to us"})
    flapping = observer.flapping(now)
    for member, times in sorted(flapping.items()):
        if statuses.get(member) == "alive":
            partitions.append(
                {
                    "member": member,
                    "status": "alive",
                    "suspected": times,
                    "reason": f"suspected {times} times in {FLAP_WINDOW:.0f} s, then refuted",
                }
            )
    last_change = observer.last_topology_change
    details: dict[str, Any] = {
        "expected_members": len(expected),
        "actual_members": len(alive),
        "unreachable": unreachable,
        "suspected_partitions": partitions,
        "last_topology_change": last_change,
        "last_topology_change_ago": None if last_change is None else now - last_change,
        "replication_lag": observer.replication_lag(now),
        "recommendations": _recommendations(engine, len(expected), unreachable, partitions, limit),
    }
    details["cluster_status"] = "ok" if not details["recommendations"] else "degraded"
    return details


def _recommendations(
    engine: Engine,
    expected: int,
    unreachable: list[dict[str, Any]],
    partitions: list[dict[str, Any]],
    limit: float,
) -> list[str]:
    advice: list[str] = []
    if unreachable:
        longest = max(entry["for"] for entry in unreachable)
        names = ", ".join(f"{e['member']} ({e['status']})" for e in unreachable)
        advice.append(
            f"{len(unreachable)} of {expected} members unreachable for {_ago(longest)}: {names}; "
            "check those hosts and the network to them (dead members are retried for "
            f"{_ago(engine.config.reconnect_window)})"
        )
    for entry in partitions:
        if "silent_for" in entry:
            advice.append(
                f"{entry['member']} is reported alive by others but silent to us for "
                f"{_ago(entry['silent_for'])} (limit {_ago(limit)}): a partial partition? "
                "check routes and firewalls between this node and it"
            )
        else:
            advice.append(
                f"{entry['member']} was {entry['reason']}: an unstable link or an overloaded "
                "host; consider raising probe_timeout"
            )
    refused = {
        k.removeprefix("refused."): v
        for k, v in engine.counters.items()
        if k.startswith("refused.") and v
    }
    for reason in _MISCONFIGURED:
        if refused.get(reason):
            advice.append(
                f"{refused[reason]} connections refused ({reason}): a node with another "
                "cluster name, key or protocol version is trying to join"
            )
    return advice
