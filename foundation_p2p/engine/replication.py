"""Replication of named CRDT replicas: eager push of local deltas and push-pull anti-entropy.

Rules of this file: it reads no clock and no global random source, and sends nothing itself;
it queues Sends in the Outbox. Anti-entropy starts with a hash of each replica's digest, so a
converged pair exchanges one small message per round; only replicas whose hashes differ
exchange full digests and then exactly the deltas each side lacks, chunked and budgeted.
"""

from __future__ import annotations

import random
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgpack
from pycrdt import merge_updates

from crdts import (
    EMPTY_UPDATE,
    HLC,
    AWORSet,
    ClockDriftError,
    DecodeError,
    GCounter,
    LWWMap,
    LWWRegister,
    MemberTable,
    MVRegister,
    ORMap,
    PNCounter,
    Timestamp,
    YDoc,
)
from crdts.ydoc import validate_update
from foundation_p2p.config import Config
from foundation_p2p.engine.errors import LocalProtocolError, RemoteProtocolError
from foundation_p2p.engine.events import Outbox, PushAcked, ReplicaChanged, WritesAcked
from foundation_p2p.engine.membership import Membership
from foundation_p2p.engine.messages import (
    PushAck,
    ReplicaDelta,
    ReplicaDigest,
    SyncDelta,
    SyncDigest,
)

MEMBERS = "sys/members"
SUMMARY_TAG_SUFFIX = "#"  # a ReplicaDigest whose tag ends with this carries a digest hash
REPLICA_TYPES: dict[str, type[Any]] = {
    cls.TAG: cls
    for cls in (GCounter, PNCounter, LWWRegister, MVRegister, AWORSet, ORMap, LWWMap, YDoc)
}
EMPTY_DIGEST: dict[str, Any] = {
    "gcounter": {},
    "pncounter": [{}, {}],
    "lwwregister": None,
    "mvregister": {},
    "aworset": {},
    "ormap": {},
    "lwwmap": {},
    "members": {},
    "ydoc": b"\x00",
}
_SEEN_PUSHES = 8192
_TRACKED_PUSHES = 8192  # push batches whose acks are still mapped to the writes they carried
BURST_GAP = 0.002
"""Seconds: a local write this soon after the previous push, while that push and the one
before it are both unacknowledged by some target, is part of a burst ..."""
BURST_HOLD = 0.008
"""... and its push waits this long, so the receivers merge a few turns' writes at once. (A
writer that waits for each write to be seen has at most one push in flight: never held, even
when the peer's acknowledgement is still on its way.)"""
_IN_FLIGHT = 2  # unacknowledged pushes that make a write part of a burst


def tag_of(replica: Any) -> str:
    """The wire tag of a replica's type."""
    return str(replica.TAG)


def encode_delta(delta: Any) -> bytes:
    """A delta as payload bytes: a Yjs update as is, any other CRDT as msgpack of to_wire()."""
    if isinstance(delta, bytes):
        return delta
    return bytes(msgpack.packb(delta.to_wire(), use_bin_type=True))


def decode_delta(tag: str, payload: bytes) -> Any:
    """Inverse of encode_delta; DecodeError on a bad payload."""
    if tag == YDoc.TAG:
        return payload
    cls = MemberTable if tag == MemberTable.TAG else REPLICA_TYPES[tag]
    try:
        obj = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise DecodeError(f"delta payload is not msgpack: {exc}") from None
    return cls.from_wire(obj)


def is_empty(tag: str, delta: Any) -> bool:
    """Whether a delta carries nothing."""
    if tag == YDoc.TAG:
        return bool(delta == EMPTY_UPDATE)
    if tag == MemberTable.TAG:
        return not len(delta)
    return bool(delta.digest() == EMPTY_DIGEST[tag])


def split(tag: str, delta: Any, max_entries: int) -> list[Any]:
    """A delta in pieces that are each safe to merge alone (a Yjs update stays whole)."""
    if tag == YDoc.TAG:
        return [delta]
    return list(delta.split(max_entries))


class Replication:
    """The replicas of one node and the protocol that keeps them equal across the cluster."""

    def __init__(
        self,
        node_id: str,
        config: Config,
        rng: random.Random,
        outbox: Outbox,
        counters: Counter[str],
        membership: Membership,
        clock: HLC,
        on_refused: Callable[[str, RemoteProtocolError], None],
    ) -> None:
        self.node_id = node_id
        # Dots and counter entries are written under a per-session replica id, so a node that
        # restarts without its state can never reuse a dot or a counter slot it wrote before.
        self.replica_id = f"{node_id}~{rng.getrandbits(32):08x}"
        self.config = config
        self.rng = rng
        self.outbox = outbox
        self.counters = counters
        self.membership = membership
        self.clock = clock
        self.on_refused = on_refused
        self.replicas: dict[str, Any] = {}
        self._summaries: dict[str, bytes] = {}
        self._members_summary: tuple[int, bytes] | None = None
        # Our member table once equalled a peer's: we know the cluster, not just who we met.
        self.members_agreed = False
        self._pending: dict[str, Any] = {}  # name -> merged delta (a list of updates for a YDoc)
        self.write_seq = 0
        """The number of the latest local write."""
        # replica -> its writes up to this number have been pushed (so the range a push
        # reports for a replica joins the previous one, whatever other replicas wrote between)
        self._flushed_upto: dict[str, int] = {}
        self._written: set[str] = set()  # replicas this session wrote to
        # push seq -> (replicas in the batch, first and last write number it covers)
        self._push_writes: OrderedDict[int, list[tuple[str, int, int]]] = OrderedDict()
        self._flush_at: float | None = None
        self._last_flush = float("-inf")
        # the latest push batches -> their targets that have not acknowledged them yet
        self._in_flight: OrderedDict[int, set[str]] = OrderedDict()
        self._next_anti_entropy_at: float | None = None
        self._rounds = 0  # periodic anti-entropy rounds started
        # a fresh range per session, small enough to travel as a 32-bit int
        self._push_seq = rng.getrandbits(31)
        self._seen_pushes: OrderedDict[tuple[str, int], None] = OrderedDict()

    # --- replicas -----------------------------------------------------------------------

    def replica(self, name: str, cls: type[Any], **options: Any) -> Any:
        """The replica `name`, created empty as a `cls` if new; LocalProtocolError on a clash."""
        if name == MEMBERS:
            raise LocalProtocolError(f"{MEMBERS!r} is the membership table; it is read-only")
        existing = self.replicas.get(name)
        if existing is not None:
            same_type = type(existing) is cls
            if cls is ORMap and same_type and "value_type" in options:
                same_type = existing.value_type is options["value_type"]
            if not same_type:
                raise LocalProtocolError(
                    f"replica {name!r} is a {_describe(existing)}, not a {cls.__name__}"
                )
            return existing
        if getattr(cls, "TAG", None) not in REPLICA_TYPES:
            raise LocalProtocolError(f"{cls!r} is not a replicable CRDT type")
        created = cls(self.replica_id, **options)
        self.replicas[name] = created
        return created

    def local_write(self, now: float, name: str, delta: Any) -> int:
        """Queue a delta already applied to replica `name` for the eager push; return the
        write's number (see WritesAcked)."""
        replica = self.replicas.get(name)
        if replica is None:
            raise LocalProtocolError(f"no replica named {name!r}")
        tag = tag_of(replica)
        self.write_seq += 1
        self._written.add(name)
        self._summaries.pop(name, None)
        self.outbox.emit(ReplicaChanged(name, "local"))
        pending = self._pending.get(name)
        if tag == YDoc.TAG:  # updates are merged once, at the flush
            if pending is None:
                self._pending[name] = [delta]
            else:
                pending.append(delta)
        elif pending is None:
            self._pending[name] = delta.copy()
        else:
            pending.merge(delta)
        if self._flush_at is None:
            delay = self.config.push_delay
            if len(self._in_flight) >= _IN_FLIGHT and now - self._last_flush < BURST_GAP:
                delay = max(delay, BURST_HOLD)
                self.counters["push.held"] += 1
            self._flush_at = now + delay
        return self.write_seq

    # --- timers -------------------------------------------------------------------------

    @property
    def push_at(self) -> float | None:
        """When the pending local deltas are due to be pushed (None: nothing pending)."""
        return self._flush_at

    def next_deadline(self) -> float | None:
        """The earliest time tick() has work to do."""
        flush, sync = self._flush_at, self._next_anti_entropy_at
        if flush is None:
            return sync
        return flush if sync is None or flush <= sync else sync

    def tick(self, now: float) -> None:
        """Flush pushes, start an anti-entropy round, and retry dead members, when due."""
        if self._flush_at is not None and now >= self._flush_at:
            self._flush(now)
        if self._next_anti_entropy_at is None:
            self._next_anti_entropy_at = now + self.rng.uniform(
                0, self.config.anti_entropy_interval
            )
        elif now >= self._next_anti_entropy_at:
            self._next_anti_entropy_at = now + self.config.anti_entropy_interval
            peers = self.membership.peers(("alive",))
            if peers:
                self._rounds += 1
                every = self.config.members_sync_every(self.membership.cluster_size())
                self.start_sync(now, self.rng.choice(peers), self._rounds % every == 0)
        if self.membership.retry_due:
            due, self.membership.retry_due = self.membership.retry_due, []
            for node in due:
                self.start_sync(now, node)

    def start_sync(self, now: float, peer: str, members: bool = True) -> None:
        """Begin a push-pull exchange with `peer` by sending our digest hashes (the member
        table's too, if `members`)."""
        self.counters["anti_entropy.rounds"] += 1
        self.outbox.send(
            peer,
            SyncDigest(
                self._now_ms(now),
                self._summary_digests(members),
                True,
                self.membership.take_rumours(),
            ),
        )

    def _flush(self, now: float) -> None:
        self._flush_at = None
        self._last_flush = now
        pending, self._pending = self._pending, {}
        last = self.write_seq
        first = {name: self._flushed_upto.get(name, 0) + 1 for name in pending}
        self._flushed_upto.update(dict.fromkeys(pending, last))
        for name, delta in pending.items():
            if isinstance(delta, list):
                pending[name] = delta[0] if len(delta) == 1 else bytes(merge_updates(*delta))
        size = self.membership.cluster_size()
        peers = self.membership.peers(("alive",))
        if not peers:
            self._in_flight.clear()
            return
        small = len(peers) < self.config.fanout_all_below
        hops = 1 if small else self.config.push_hop_limit(size)
        targets = peers if small else self.rng.sample(peers, min(self.config.fanout, len(peers)))
        batches = list(self._chunked(pending.items()))
        # a replica split over several messages is not held until all of them arrive: leave
        # its acknowledgement to anti-entropy
        messages: Counter[str] | None = None
        if len(batches) > 1:  # (one message, the usual push: every replica is whole in it)
            messages = Counter(name for deltas in batches for name in {d.name for d in deltas})
        for deltas in batches:
            self._push_seq += 1
            self._remember_push((self.node_id, self._push_seq))
            self._push_writes[self._push_seq] = [
                (name, first[name], last)
                for name in dict.fromkeys(d.name for d in deltas)
                if messages is None or messages[name] == 1
            ]
            if len(self._push_writes) > _TRACKED_PUSHES:
                self._push_writes.popitem(last=False)
            # origin "": the receiver knows the sender, and a 1-key push stays small
            message = SyncDelta(self._now_ms(now), tuple(deltas), "", self._push_seq, hops)
            for peer in targets:
                self.outbox.send(peer, message)
            self.counters["push.batches"] += 1
            self._in_flight[self._push_seq] = set(targets)
            if len(self._in_flight) > _IN_FLIGHT:
                self._in_flight.popitem(last=False)

    def _chunked(self, items: Iterable[tuple[str, Any]]) -> Iterator[list[ReplicaDelta]]:
        """ReplicaDeltas grouped into messages of at most the byte budget each."""
        batch: list[ReplicaDelta] = []
        size = 0
        for name, delta in items:
            tag = self._tag(name, self._lookup(name))
            for piece in split(tag, delta, self.config.chunk_entries):
                payload = encode_delta(piece)
                if batch and size + len(payload) > self.config.anti_entropy_budget_bytes:
                    yield batch
                    batch, size = [], 0
                batch.append(ReplicaDelta(name, tag, payload))
                size += len(payload)
        if batch:
            yield batch

    # --- digests ------------------------------------------------------------------------

    def _lookup(self, name: str) -> Any:
        return self.membership.table if name == MEMBERS else self.replicas.get(name)

    def _tag(self, name: str, replica: Any) -> str:
        return MemberTable.TAG if name == MEMBERS else tag_of(replica)

    def _all(self) -> Iterator[tuple[str, str, Any]]:
        yield MEMBERS, MemberTable.TAG, self.membership.table
        for name, replica in self.replicas.items():
            yield name, tag_of(replica), replica

    def _summary(self, name: str, tag: str, replica: Any) -> bytes:
        if name == MEMBERS:
            version = self.membership.version
            if self._members_summary is None or self._members_summary[0] != version:
                self._members_summary = (version, replica.fingerprint())
            return self._members_summary[1]
        summary = self._summaries.get(name)
        if summary is None:
            summary = self._summaries[name] = replica.fingerprint()
        return summary

    def forget_summary(self, name: str) -> None:
        """Drop the cached digest hash of `name` (its state changed outside merges and writes)."""
        self._summaries.pop(name, None)

    def _summary_digests(self, members: bool = True) -> tuple[ReplicaDigest, ...]:
        return tuple(
            ReplicaDigest(name, tag + SUMMARY_TAG_SUFFIX, self._summary(name, tag, replica))
            for name, tag, replica in self._all()
            if members or name != MEMBERS
        )

    # --- messages -----------------------------------------------------------------------

    def receive_digest(self, now: float, src: str, message: SyncDigest) -> None:
        """Answer a SyncDigest: hashes get full digests back; full digests get deltas."""
        self._check_clock(now, src, message.sent_ms)
        theirs = {d.name: d for d in message.digests}
        summaries = any(d.tag.endswith(SUMMARY_TAG_SUFFIX) for d in message.digests)
        if summaries:
            self._answer_summaries(now, src, theirs)
            return
        self._refute_if_suspected(theirs.get(MEMBERS))
        deltas = []
        mine = []
        for digest in message.digests:
            replica = self._lookup(digest.name)
            if replica is None:
                if digest.tag in EMPTY_DIGEST:  # we lack it: ask for all of it
                    mine.append(ReplicaDigest(digest.name, digest.tag, EMPTY_DIGEST[digest.tag]))
                continue
            tag = self._tag(digest.name, replica)
            if digest.tag != tag:
                self.on_refused(
                    src,
                    RemoteProtocolError(
                        "type_mismatch",
                        f"replica {digest.name!r} is a {tag} here, {digest.tag} there",
                    ),
                )
                continue
            mine.append(ReplicaDigest(digest.name, tag, replica.digest()))
            try:
                delta = replica.delta_since(digest.digest)
            except DecodeError as exc:
                self.on_refused(src, RemoteProtocolError("bad_digest", f"{digest.name!r}: {exc}"))
                continue
            # an empty replica is still sent to a peer that lacks it, so both list it
            if not is_empty(tag, delta) or digest.digest == EMPTY_DIGEST[tag]:
                deltas.append((digest.name, delta))
        for batch in self._chunked(deltas):
            self.outbox.send(src, SyncDelta(self._now_ms(now), tuple(batch)))
            break  # one budget per round; the rest follows in the next round
        if message.reply and mine:
            self.outbox.send(src, SyncDigest(self._now_ms(now), tuple(mine), False))

    def _answer_summaries(self, now: float, src: str, theirs: dict[str, ReplicaDigest]) -> None:
        differing = []
        for name, tag, replica in self._all():
            summary = theirs.pop(name, None)
            if summary is None and name == MEMBERS:
                continue  # a round without the member table (see members_sync_every)
            if summary is None or summary.digest != self._summary(name, tag, replica):
                differing.append(ReplicaDigest(name, tag, replica.digest()))
            elif name == MEMBERS:
                self.members_agreed = True
            elif name in self._written:  # equal copies: the peer holds all our writes to it
                self.outbox.emit(WritesAcked(src, name, 0, self.write_seq))
        for name, summary in theirs.items():  # replicas they have and we lack
            tag = summary.tag.removesuffix(SUMMARY_TAG_SUFFIX)
            if tag in EMPTY_DIGEST:
                differing.append(ReplicaDigest(name, tag, EMPTY_DIGEST[tag]))
        if differing:
            self.counters["anti_entropy.differing"] += 1
            self.outbox.send(src, SyncDigest(self._now_ms(now), tuple(differing), True))

    def _refute_if_suspected(self, digest: ReplicaDigest | None) -> None:
        """A peer that thinks we are suspect, dead or gone learns otherwise from our reply."""
        if digest is None or not isinstance(digest.digest, dict):
            return
        entry = digest.digest.get(self.node_id)
        if not isinstance(entry, list) or len(entry) != 3 or type(entry[0]) is not int:
            return
        incarnation, rank = entry[0], entry[1]
        mine = self.membership.incarnation
        if (rank != 0 and incarnation >= mine) or incarnation > mine:
            if incarnation <= mine + self.config.max_incarnation_jump:
                self.membership.refute(incarnation)

    def receive_delta(self, now: float, src: str, message: SyncDelta) -> None:
        """Merge deltas; acknowledge and relay a push we have not seen before."""
        self._check_clock(now, src, message.sent_ms)
        origin = message.origin or src
        if message.is_push:
            key = (origin, message.seq)
            if key in self._seen_pushes:
                self.counters["push.duplicates"] += 1
                return
            self._remember_push(key)
            if message.hops > 1:
                exclude = {src, origin}
                peers = [p for p in self.membership.peers(("alive",)) if p not in exclude]
                relay = SyncDelta(
                    message.sent_ms, message.deltas, origin, message.seq, message.hops - 1
                )
                for peer in self.rng.sample(peers, min(self.config.fanout, len(peers))):
                    self.outbox.send(peer, relay)
        for item in message.deltas:
            try:
                self._merge(now, src, item)
            except RemoteProtocolError as exc:
                self.on_refused(src, exc)
        # acknowledged once merged: the merge's ReplicaChanged (the observers) comes first
        if message.is_push and origin != self.node_id:
            self.outbox.send(origin, PushAck(origin, message.seq))

    def receive_push_ack(self, src: str, message: PushAck) -> None:
        """Report that `src` has our push batch."""
        if message.origin == self.node_id:
            waiting = self._in_flight.get(message.seq)
            if waiting is not None:
                waiting.discard(src)
                if not waiting:
                    del self._in_flight[message.seq]
            self.outbox.emit(PushAcked(src, message.seq))
            carried = self._push_writes.get(message.seq)
            if carried is not None:
                for name, first, last in carried:
                    self.outbox.emit(WritesAcked(src, name, first, last))

    def _merge(self, now: float, src: str, item: ReplicaDelta) -> None:
        if item.name == MEMBERS:
            if item.tag != MemberTable.TAG:
                raise RemoteProtocolError("type_mismatch", f"{MEMBERS} delta tagged {item.tag!r}")
            try:
                table = decode_delta(item.tag, item.payload)
            except DecodeError as exc:
                raise RemoteProtocolError("bad_delta", f"{item.name!r}: {exc}") from None
            self.membership.apply_table(now, src, table)
            return
        cls = REPLICA_TYPES.get(item.tag)
        if cls is None:
            raise RemoteProtocolError("unknown_replica_type", f"{item.name!r} tagged {item.tag!r}")
        replica = self.replicas.get(item.name)
        if replica is not None and tag_of(replica) != item.tag:
            raise RemoteProtocolError(
                "type_mismatch", f"replica {item.name!r} is a {tag_of(replica)}, got {item.tag}"
            )
        try:
            delta = decode_delta(item.tag, item.payload)
        except DecodeError as exc:
            raise RemoteProtocolError("bad_delta", f"{item.name!r}: {exc}") from None
        if replica is not None and is_empty(item.tag, delta):
            return
        if replica is None:
            replica = self._adopt(item.tag, delta)
            self.replicas[item.name] = replica
        else:
            try:
                replica.merge(delta)
            except DecodeError as exc:
                raise RemoteProtocolError("bad_delta", f"{item.name!r}: {exc}") from None
            except TypeError as exc:  # e.g. an ORMap of another value type
                raise RemoteProtocolError("type_mismatch", f"{item.name!r}: {exc}") from None
        self._summaries.pop(item.name, None)
        self.counters["replica.merged"] += 1
        self.outbox.emit(ReplicaChanged(item.name, src))

    def _adopt(self, tag: str, delta: Any) -> Any:
        """A new local replica, under our own replica id, holding a peer's first delta."""
        if tag == YDoc.TAG:
            try:
                validate_update(delta)  # before a YDoc exists: a refused one would leak
            except DecodeError as exc:
                raise RemoteProtocolError("bad_delta", str(exc)) from None
            replica: Any = YDoc(self.replica_id)
        elif tag == ORMap.TAG:
            replica = ORMap(self.replica_id, delta.value_type)
        else:
            replica = REPLICA_TYPES[tag](self.replica_id)
        try:
            replica.merge(delta)
        except DecodeError as exc:
            raise RemoteProtocolError("bad_delta", str(exc)) from None
        return replica

    # --- helpers ------------------------------------------------------------------------

    def _now_ms(self, now: float) -> int:
        return int(now * 1000)

    def _check_clock(self, now: float, src: str, sent_ms: int) -> None:
        try:
            self.clock.observe(Timestamp(sent_ms, 0, src), self._now_ms(now))
        except ClockDriftError as exc:
            raise RemoteProtocolError("future_dated", str(exc)) from None

    def _remember_push(self, key: tuple[str, int]) -> None:
        self._seen_pushes[key] = None
        if len(self._seen_pushes) > _SEEN_PUSHES:
            self._seen_pushes.popitem(last=False)


def _describe(replica: Any) -> str:
    if isinstance(replica, ORMap):
        return f"ORMap of {replica.value_type.__name__}"
    return type(replica).__name__
