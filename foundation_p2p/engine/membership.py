"""SWIM membership with Lifeguard refinements, as a sans-IO state machine.

Rules of this file: everything that changes what we believe about a member lives here; it
reads no clock (every call takes `now`), draws randomness only from the engine's rng, and
touches no socket (it queues Sends in the Outbox).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from crdts import Member, MemberTable
from crdts.members import STATUS_RANK
from foundation_p2p.config import Config
from foundation_p2p.engine.errors import RemoteProtocolError
from foundation_p2p.engine.events import (
    MemberDown,
    MemberLeft,
    MemberSuspect,
    MemberUp,
    Outbox,
)
from foundation_p2p.engine.messages import Ack, Gossip, Message, Ping, PingReq, Rumour
from foundation_p2p.engine.rumours import RumourQueue
from foundation_p2p.engine.suspicion import Suspicion

LIVE = ("alive", "suspect")


@dataclass(slots=True)
class _Probe:
    target: str
    seq: int
    direct_deadline: float
    period_end: float
    acked: bool = False
    indirect_sent: bool = False


@dataclass(slots=True)
class _Relay:
    requester: str
    requester_seq: int
    expires: float


@dataclass(slots=True)
class _Retry:
    since: float
    next_at: float  # the next attempt (inf: none before the window closes)
    interval: float  # the backoff step that led to next_at


RETRY_SPREAD = 3
"""Expected attempts across the cluster per dead member per backoff step: each node makes an
attempt at a step with probability RETRY_SPREAD / live members (as Serf spreads its
reconnects), so a node that sees half of a large cluster die retries a few of them, not all of
them, per step."""


class Membership:
    """Who is in the cluster and in what state, kept by probing and rumour."""

    def __init__(
        self,
        node_id: str,
        address: str,
        metadata: Mapping[str, Any],
        config: Config,
        rng: random.Random,
        outbox: Outbox,
        counters: Counter[str],
        on_refused: Callable[[str, RemoteProtocolError], None],
    ) -> None:
        self.node_id = node_id
        self.address = address
        self.config = config
        self.rng = rng
        self.outbox = outbox
        self.counters = counters
        self.on_refused = on_refused
        self.incarnation = 0
        self.table = MemberTable(node_id)
        self.table.alive(node_id, 0, address, dict(metadata))
        self.rumours = RumourQueue()
        self.health = 0  # Lifeguard local health multiplier: 0 is healthy
        self.version = 0  # bumped on every change to the table
        self.leaving = False
        self._seq = 0
        self._probe: _Probe | None = None
        self._next_probe_at: float | None = None
        self._next_gossip_at: float | None = None
        self._order: list[str] = []
        self._relays: dict[int, _Relay] = {}
        self._suspicions: dict[str, Suspicion] = {}
        self._retries: dict[str, _Retry] = {}
        self._checks: dict[str, tuple[float, int]] = {}  # node -> (deadline, incarnation)
        self._gone_since: dict[str, float] = {}  # left members, for tombstone expiry
        self._forgotten: dict[str, int] = {}  # node -> incarnation we stopped tracking at
        self.retry_due: list[str] = []  # dead members whose reconnect attempt is due
        self._live: dict[str, None] = {}  # other members alive or suspect (an ordered set)
        self._alive: dict[str, None] = {}
        self._timers: list[tuple[float, str, str]] = []
        self._limit_size = 0  # the cluster size the cached retransmit limit is for
        self._limit = 0
        self._timeouts_size = 0  # ... and the cached suspicion timeouts
        self._timeouts = (0.0, 0.0)
        self._queue_self()

    # --- views --------------------------------------------------------------------------

    def status(self, node: str) -> str | None:
        """The status of `node`, or None if unknown."""
        member = self.table.get(node)
        return member.status if member else None

    def peers(self, statuses: tuple[str, ...] = LIVE) -> list[str]:
        """Other members in the given states (a fresh list, in a deterministic order)."""
        if statuses == LIVE:
            return list(self._live)
        if statuses == ("alive",):
            return list(self._alive)
        return [n for n, m in self.table.items() if n != self.node_id and m.status in statuses]

    def cluster_size(self) -> int:
        """Members believed live, ourselves included."""
        return 1 + len(self._live)

    def _touch(self, node: str, status: str | None = None) -> None:
        """Keep the live-peer indexes and the table version in step with the table (`status`:
        the node's status now, if the caller has it at hand)."""
        self.version += 1
        if node == self.node_id:
            return
        if status is None:
            member = self.table.get(node)
            status = member.status if member else None
        if status == "alive" or status == "suspect":
            self._live.setdefault(node, None)
        else:
            self._live.pop(node, None)
        if status == "alive":
            self._alive.setdefault(node, None)
        else:
            self._alive.pop(node, None)

    def address_of(self, node: str) -> str | None:
        """The advertised address of `node`."""
        member = self.table.get(node)
        return member.address if member else None

    def take_rumours(self, room: int = 0) -> tuple[Rumour, ...]:
        """Rumours to piggyback on the next message (`room` fewer than the most it carries)."""
        size = 1 + len(self._live)
        if size != self._limit_size:
            self._limit_size, self._limit = size, self.config.retransmit_limit(size)
        return self.rumours.take(self.config.max_rumours_per_message - room, self._limit)

    def next_deadline(self) -> float | None:
        """The earliest time tick() has work to do."""
        best = self._next_probe_at
        probe = self._probe
        if probe is not None:
            if best is None or probe.period_end < best:
                best = probe.period_end
            if not probe.acked and not probe.indirect_sent and probe.direct_deadline < best:
                best = probe.direct_deadline
        gossip = self._next_gossip_at
        if gossip is not None and (best is None or gossip < best) and len(self.rumours):
            best = gossip
        timer = self._next_timer()
        if timer is not None and (best is None or timer < best):
            best = timer
        return best

    # --- timers -------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Run every timer that is due at `now`."""
        if self.leaving:
            return
        self._tick_probe(now)
        self._tick_timers(now)
        self._tick_gossip(now)
        if self._relays:
            for seq in [s for s, r in self._relays.items() if r.expires <= now]:
                del self._relays[seq]

    def _scaled(self, seconds: float) -> float:
        return seconds * (self.health + 1)

    def _tick_probe(self, now: float) -> None:
        probe = self._probe
        if probe is not None:
            if not probe.acked and not probe.indirect_sent and now >= probe.direct_deadline:
                self._send_indirect(probe)
            if now >= probe.period_end:
                if not probe.acked:
                    self._adjust_health(+1)
                    self.counters["probe.failed"] += 1
                    self._suspect(now, probe.target, self.node_id)
                self._probe = None
        if self._next_probe_at is None:
            self._next_probe_at = now + self.rng.uniform(0, self.config.probe_interval)
        if now >= self._next_probe_at and self._probe is None:
            self._start_probe(now)

    def _start_probe(self, now: float) -> None:
        target = self._next_target()
        interval = self._scaled(self.config.probe_interval)
        self._next_probe_at = now + interval
        if target is None:
            return
        self._seq += 1
        self._probe = _Probe(
            target, self._seq, now + self._scaled(self.config.probe_timeout), now + interval
        )
        self.counters["probe.sent"] += 1
        self.outbox.send(target, Ping(self._seq, target, self.take_rumours()))

    def _next_target(self) -> str | None:
        while self._order:
            node = self._order.pop()
            if self.status(node) in LIVE:
                return node
        peers = self.peers()
        if not peers:
            return None
        self.rng.shuffle(peers)
        self._order = peers
        return self._order.pop()

    def _send_indirect(self, probe: _Probe) -> None:
        probe.indirect_sent = True
        helpers = list(self._alive)  # the alive peers but the target, copied in C
        if probe.target in self._alive:
            helpers.remove(probe.target)
        chosen = self.rng.sample(helpers, min(self.config.indirect_checks, len(helpers)))
        for helper in chosen:
            self.outbox.send(helper, PingReq(probe.seq, probe.target, self.take_rumours()))

    # Suspicion deadlines, reconnect attempts and tombstone expiry share one heap of
    # (when, kind, node); an entry is acted on only if it still matches the live state, so
    # rescheduling just pushes a new entry.

    def _schedule(self, when: float, kind: str, node: str) -> None:
        heapq.heappush(self._timers, (when, kind, node))

    def _valid(self, when: float, kind: str, node: str) -> bool:
        if kind == "suspect":
            suspicion = self._suspicions.get(node)
            return suspicion is not None and suspicion.deadline() == when
        if kind == "retry":
            retry = self._retries.get(node)
            return retry is not None and retry.next_at == when
        if kind == "check":
            check = self._checks.get(node)
            return check is not None and check[0] == when
        since = self._gone_since.get(node)
        member = self.table.get(node)
        return since is not None and member is not None and member.status in ("dead", "left")

    def _next_timer(self) -> float | None:
        timers = self._timers
        while timers and not self._valid(*timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def _tick_timers(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            when, kind, node = heapq.heappop(timers)
            if not self._valid(when, kind, node):
                continue
            if kind == "suspect":
                suspicion = self._suspicions.pop(node)
                member = self.table.get(node)
                if (
                    member
                    and member.status == "suspect"
                    and member.incarnation == suspicion.incarnation
                ):
                    self._record(
                        now, Rumour(node, member.incarnation, "dead", member.address), member
                    )
            elif kind == "retry":
                self._fire_retry(now, node)
            elif kind == "check":
                incarnation = self._checks.pop(node)[1]
                member = self.table.get(node)
                if member and member.status == "alive" and member.incarnation == incarnation:
                    self.counters["suspicion.check_failed"] += 1
                    self._suspect(now, node, self.node_id)
            else:
                self._expire(now, node)

    def _fire_retry(self, now: float, node: str) -> None:
        retry = self._retries[node]
        if now - retry.since > self.config.reconnect_window:
            del self._retries[node]
            return
        self.retry_due.append(node)
        self.counters["reconnect.attempt"] += 1
        retry.interval = min(retry.interval * 2, self.config.reconnect_max_interval)
        self._plan_retry(node, retry, now + retry.interval * self.rng.uniform(0.8, 1.2))

    def _plan_retry(self, node: str, retry: _Retry, step: float) -> None:
        """Schedule the attempt on `node` at the first backoff step from `step` at which this
        node tries (RETRY_SPREAD / live members each), drawing the steps skipped at once."""
        chance = RETRY_SPREAD / self.cluster_size()
        when = step
        if chance < 1.0:  # the skipped steps are geometric: one draw, not a timer per step
            skip = int(math.log(1.0 - self.rng.random()) / math.log1p(-chance))
            if skip:
                cap = self.config.reconnect_max_interval
                interval, waits = retry.interval, 0.0
                while skip and interval < cap:
                    interval = min(interval * 2, cap)
                    waits += interval
                    skip -= 1
                retry.interval = interval
                when += (waits + skip * cap) * self.rng.uniform(0.8, 1.2)  # one jitter for all
        if when - retry.since > self.config.reconnect_window:
            retry.next_at = math.inf  # no attempt of ours is due; only the member's voice
            return
        self._retry_at(node, when)

    def _retry_at(self, node: str, when: float) -> None:
        retry = self._retries.get(node)
        if retry is not None:
            retry.next_at = when
            self._schedule(when, "retry", node)

    def _expire(self, now: float, node: str) -> None:
        member = self.table.get(node)
        since = self._gone_since.pop(node)
        assert member is not None
        window = (
            self.config.tombstone_ttl if member.status == "left" else self.config.reconnect_window
        )
        if now - since < window:  # rescheduled after a newer death
            self._gone_since[node] = since
            self._schedule(since + window, "gone", node)
            return
        self._forgotten[node] = member.incarnation
        self.table.forget(node)
        self._touch(node)
        self._retries.pop(node, None)

    def _tick_gossip(self, now: float) -> None:
        if self._next_gossip_at is None or now >= self._next_gossip_at:
            self._next_gossip_at = now + self.config.gossip_interval
            if not len(self.rumours):
                return
            peers = self.peers()
            for node in self.rng.sample(peers, min(self.config.gossip_nodes, len(peers))):
                rumours = self.take_rumours()
                if not rumours:
                    break
                self.outbox.send(node, Gossip(rumours))

    # --- messages -----------------------------------------------------------------------

    def receive(self, now: float, src: str, message: Message) -> None:
        """Handle a membership message from `src` (its rumours are applied by the caller)."""
        if isinstance(message, Ping):
            if message.target != self.node_id:
                raise RemoteProtocolError(
                    "misdirected", f"ping for {message.target!r} reached {self.node_id!r}"
                )
            self.outbox.send(src, Ack(message.seq, self.take_rumours()))
        elif isinstance(message, Ack):
            self._on_ack(now, src, message)
        elif isinstance(message, PingReq):
            if message.target == self.node_id:
                self.outbox.send(src, Ack(message.seq, self.take_rumours()))
                return
            self._seq += 1
            self._relays[self._seq] = _Relay(
                src, message.seq, now + self._scaled(self.config.probe_interval)
            )
            self.outbox.send(message.target, Ping(self._seq, message.target, self.take_rumours()))

    def _on_ack(self, now: float, src: str, ack: Ack) -> None:
        relay = self._relays.pop(ack.seq, None)
        if relay is not None:
            self.outbox.send(relay.requester, Ack(relay.requester_seq, self.take_rumours()))
            return
        probe = self._probe
        if probe is not None and ack.seq == probe.seq and not probe.acked:
            probe.acked = True
            self._adjust_health(-1)
            self.counters["probe.acked"] += 1

    def heard_from(self, now: float, src: str) -> None:
        """Any message from `src` proves it is up: a pending probe of it succeeds, and a dead
        member that talks is retried now."""
        probe = self._probe
        if probe is not None and probe.target == src and not probe.acked:
            probe.acked = True
            self._adjust_health(-1)  # a probe answered is a probe answered, whatever the message
            self.counters["probe.acked"] += 1
        if self._checks:
            self._checks.pop(src, None)
        retry = self._retries.get(src)
        if retry is not None and retry.next_at > now:
            self._retry_at(src, now)

    def peer_disconnected(self, now: float, node: str) -> None:
        """The driver's connection to `node` closed: check it now with a direct Ping rather
        than at its next probe round (a refused redial comes back as peer_unreachable)."""
        if self.leaving or node == self.node_id or self.status(node) not in LIVE:
            return
        self._seq += 1
        self.counters["probe.on_disconnect"] += 1
        self.outbox.send(node, Ping(self._seq, node, self.take_rumours()))

    def peer_unreachable(self, now: float, node: str) -> None:
        """The driver was refused a connection to `node`'s address (nothing listens there): the
        process is gone or restarting, so suspect it now; a live one still refutes in time."""
        member = self.table.get(node)
        if self.leaving or node == self.node_id or member is None or member.status not in LIVE:
            return
        self.counters["suspicion.unreachable"] += 1
        self._suspect(now, node, self.node_id)

    # --- rumours ------------------------------------------------------------------------

    def apply_rumours(
        self, now: float, src: str, rumours: tuple[Rumour, ...], spread: bool = True
    ) -> None:
        """Apply piggybacked news; a bad rumour is refused alone (counted), the rest applied."""
        known = self.table.members.get
        rank = STATUS_RANK
        suspicions = self._suspicions
        me = self.node_id
        for rumour in rumours:
            # Most gossip repeats what we know: drop it here, before any call (a large
            # cluster applies millions of rumours a minute).
            current = known(rumour.node)
            if current is not None and rumour.incarnation <= current.incarnation:
                if rumour.incarnation < current.incarnation:
                    continue
                status = rumour.status
                if status != current.status:  # older news (a valid status ranked lower) only
                    if 0 <= rank.get(status, -1) < rank[current.status]:
                        continue
                elif (not rumour.address or rumour.address == current.address) and (
                    rumour.node != me
                ):
                    if status != "suspect":
                        continue
                    suspicion = suspicions.get(rumour.node)
                    if (
                        suspicion is None
                        or not rumour.by
                        or rumour.by in suspicion.accusers
                        or len(suspicion.accusers) > suspicion.expected
                    ):
                        continue  # an accusation we have counted (or cannot, or need not)
            try:
                self.apply(now, src, rumour, spread)
            except RemoteProtocolError as exc:
                self.on_refused(src, exc)

    def apply_table(self, now: float, src: str, table: MemberTable) -> None:
        """Apply a member-table delta from anti-entropy, entry by entry.

        News learned this way is not re-gossiped: anti-entropy spreads the table by itself,
        and re-queueing a whole table's worth of rumours would flood a large cluster.

        A "dead" learned second-hand for a member we hold alive at that incarnation is checked
        before it is believed: we ping the member with the accusation, so a live one refutes at
        once, and suspect it ourselves only if it does not answer within a probe period. After
        a partition heals, each side's table holds the other side dead; memberlist's mergeState
        suspects at once, and then every node suspects most of its own side until each member's
        refutation reaches it. For a member we already suspect, a "dead" counts as our own
        accusation, as in memberlist: tables pulled from several peers count once, not as
        independent confirmations.
        """
        known = self.table.members.get
        me = self.node_id
        suspicions = self._suspicions
        news = []
        checks = []
        # an entry equal to ours is no news (nor, about us, an echo): skip them in one pass
        differing = [(n, m, c) for n, m in table.items() if (c := known(n)) != m or n == me]
        for node, m, current in differing:
            dead = m.status == "dead"
            if current is not None and node != me:
                rank, held = 1 if dead else STATUS_RANK[m.status], STATUS_RANK[current.status]
                if m.incarnation < current.incarnation or (
                    m.incarnation == current.incarnation
                    and (rank < held or (rank == held and not dead))
                    and (not m.address or m.address == current.address)
                ):
                    continue  # older than what we hold, or the same (an accuser aside)
                if (
                    dead
                    and held == 0
                    and m.incarnation == current.incarnation
                    and (not m.address or m.address == current.address)
                ):
                    checks.append((node, current))
                    continue
                if rank == held == 1 and m.incarnation == current.incarnation:
                    suspicion = suspicions.get(node)  # a "dead" for a suspect: we accuse too
                    if suspicion is None or me in suspicion.accusers or suspicion.full:
                        if not m.address or m.address == current.address:
                            continue  # ... but we are counted already (or need not be)
            news.append(
                Rumour(
                    node,
                    m.incarnation,
                    "suspect" if dead else m.status,
                    m.address,
                    m.metadata,
                    self.node_id if dead else "",  # as memberlist: we are the accuser
                )
            )
        for rumour in news:  # each is news by the checks above: no need for the fast path
            try:
                self.apply(now, src, rumour, False)
            except RemoteProtocolError as exc:
                self.on_refused(src, exc)
        for node, current in checks:
            self._check(now, node, current)

    def _check(self, now: float, node: str, member: Member) -> None:
        """Ping `node`, held dead by a peer's table, with that accusation; suspect it if no
        message from it arrives within a probe period."""
        if node in self._checks or self.leaving:
            return
        deadline = now + self._scaled(self.config.probe_interval)
        self._checks[node] = (deadline, member.incarnation)
        self._schedule(deadline, "check", node)
        self.counters["suspicion.checked"] += 1
        accusation = Rumour(
            node, member.incarnation, "suspect", member.address, member.metadata, self.node_id
        )
        self._seq += 1
        self.outbox.send(node, Ping(self._seq, node, (accusation, *self.take_rumours(room=1))))

    def apply(self, now: float, src: str, rumour: Rumour, spread: bool = True) -> None:
        """Merge one piece of news about a member (and gossip it on, if `spread`)."""
        current = self.table.get(rumour.node)
        if current is not None and rumour.node != self.node_id:
            news = (rumour.incarnation, STATUS_RANK[rumour.status])
            held = (current.incarnation, STATUS_RANK[current.status])
            if news < held:
                return  # stale: normal in gossip, not an error
            if news == held:
                if rumour.status == "suspect" and rumour.by:
                    self._confirm(rumour.node, rumour.incarnation, rumour.by, rumour)
                if rumour.address == current.address or not rumour.address:
                    return  # news we already have
        known = current.incarnation if current else self._forgotten.get(rumour.node, 0)
        if rumour.incarnation > known + self.config.max_incarnation_jump:
            raise RemoteProtocolError(
                "absurd_incarnation",
                f"{rumour.node!r} at incarnation {rumour.incarnation}, known {known}",
            )
        if rumour.node == self.node_id:
            self._about_me(now, src, rumour)
            return
        forgotten = self._forgotten.get(rumour.node)
        if forgotten is not None:
            if rumour.incarnation <= forgotten and rumour.status != "alive":
                return
            del self._forgotten[rumour.node]
        if (
            current is not None
            and rumour.status == "alive"
            and current.status in LIVE
            and current.address
            and rumour.address != current.address
        ):
            raise RemoteProtocolError(
                "address_conflict",
                f"{rumour.node!r} claimed at {rumour.address!r}, alive at {current.address!r}",
            )
        self._record(now, rumour, current, spread)

    def _about_me(self, now: float, src: str, rumour: Rumour) -> None:
        mine = self.table.get(self.node_id)
        if self.leaving:
            return
        if rumour.status == "alive":
            if rumour.incarnation < self.incarnation:
                return
            if (
                mine is not None
                and rumour.incarnation == self.incarnation
                and rumour.address == mine.address
                and dict(rumour.metadata) == dict(mine.metadata)
            ):
                return  # our own news, echoed back
            self.counters["conflict.self"] += 1
        self.refute(rumour.incarnation)

    def refute(self, incarnation: int) -> None:
        """Raise our incarnation above `incarnation` and announce that we are alive."""
        if incarnation < self.incarnation and self.status(self.node_id) == "alive":
            return
        self.incarnation = max(self.incarnation, incarnation) + 1
        self._adjust_health(+1)
        self.counters["refuted"] += 1
        mine = self.table.get(self.node_id)
        address = mine.address if mine else self.address
        metadata = dict(mine.metadata) if mine else {}
        self.table.alive(self.node_id, self.incarnation, address, metadata)
        self._touch(self.node_id)
        self._queue_self()

    def _queue_self(self) -> None:
        mine = self.table.get(self.node_id)
        assert mine is not None
        self.rumours.push(
            Rumour(self.node_id, mine.incarnation, mine.status, mine.address, dict(mine.metadata))
        )

    def _suspect(self, now: float, node: str, accuser: str) -> None:
        member = self.table.get(node)
        if member is None:
            return
        if member.status == "suspect":
            # our own failed probe is an independent confirmation: count it and say so
            self._confirm(node, member.incarnation, accuser)
            return
        if member.status != "alive":
            return
        self._record(
            now,
            Rumour(node, member.incarnation, "suspect", member.address, member.metadata, accuser),
            member,
        )

    def _confirm(
        self, node: str, incarnation: int, accuser: str, heard: Rumour | None = None
    ) -> None:
        """Count an independent accuser of a suspect; spread the accusation if it was new
        (as `heard`, the rumour that brought it, when that says the same)."""
        suspicion = self._suspicions.get(node)
        if suspicion is None or suspicion.incarnation != incarnation:
            return
        if suspicion.confirm(accuser):
            self.counters["suspicion.confirmed"] += 1
            self._schedule(suspicion.deadline(), "suspect", node)
            member = self.table.get(node)
            if member is None:
                return
            if (
                heard is not None
                and heard.status == "suspect"
                and heard.address == member.address
                and not (heard.metadata or member.metadata)
            ):
                self.rumours.push(heard)
            else:
                self.rumours.push(
                    Rumour(
                        node, incarnation, "suspect", member.address, dict(member.metadata), accuser
                    )
                )

    def _record(
        self, now: float, rumour: Rumour, before: Member | None, spread: bool = True
    ) -> None:
        """Merge news into the table (which holds `before` for the node); on a change, emit
        the event and spread the news (or, not spreading it, drop older news queued about it)."""
        address = rumour.address or (before.address if before else "")
        metadata = rumour.metadata if rumour.metadata or before is None else before.metadata
        claim: Member | None
        if (
            before is not None
            and address == before.address
            and (metadata is before.metadata or metadata == before.metadata)
        ):  # a status change, the common case: nothing new to validate
            claim = self.table.advance(rumour.node, rumour.incarnation, rumour.status)  # type: ignore[arg-type]
            if claim is None:
                return
        else:
            claim = Member(rumour.incarnation, rumour.status, address, dict(metadata))  # type: ignore[arg-type]
            if not self.table.claim(rumour.node, claim):
                return
            claim = self.table.get(rumour.node)
            assert claim is not None
        self._touch(rumour.node, claim.status)
        if spread:  # members' metadata maps are never mutated in place: share them
            if (
                rumour.incarnation == claim.incarnation
                and rumour.status == claim.status
                and rumour.address == address
                and (rumour.metadata is claim.metadata or not (rumour.metadata or claim.metadata))
            ):
                news = rumour  # passed on as it came (with its encoding, if it has one)
            else:
                news = Rumour(
                    rumour.node, claim.incarnation, claim.status, address, claim.metadata, rumour.by
                )
            self.rumours.push(news)
        else:  # what we queued about it is now stale: sent on, it would undo this news
            self.rumours.discard(rumour.node)
        if before is None or before.status != claim.status:
            self._status_changed(now, rumour.node, claim, rumour.by)

    def _status_changed(self, now: float, node: str, member: Member, accuser: str) -> None:
        status = member.status
        if status != "suspect":
            self._suspicions.pop(node, None)
        if status == "alive":
            self._gone_since.pop(node, None)
            self._retries.pop(node, None)
            self.outbox.emit(MemberUp(node, member.address))
        elif status == "suspect":
            members = self.cluster_size()
            if members != self._timeouts_size:
                self._timeouts_size = members
                self._timeouts = self.config.suspicion_timeouts(members)
            minimum, maximum = self._timeouts
            expected = max(0, self.config.suspicion_mult - 2)
            if members - 2 < expected:
                # as memberlist: too few others to ever confirm, so wait the minimum only
                expected = 0
            suspicion = Suspicion(
                member.incarnation, now, minimum, maximum, expected, {accuser or self.node_id}
            )
            self._suspicions[node] = suspicion
            self._schedule(suspicion.deadline(), "suspect", node)
            self.outbox.emit(MemberSuspect(node))
        elif status == "dead":
            self._gone_since[node] = now
            self._schedule(now + self.config.reconnect_window, "gone", node)
            retry = self._retries[node] = _Retry(now, math.inf, self.config.reconnect_interval)
            self._plan_retry(node, retry, now + self.config.reconnect_interval)
            self.outbox.emit(MemberDown(node))
        else:
            self._gone_since[node] = now
            self._schedule(now + self.config.tombstone_ttl, "gone", node)
            self._retries.pop(node, None)
            self.outbox.emit(MemberLeft(node))

    def _adjust_health(self, delta: int) -> None:
        limit = self.config.awareness_max_multiplier - 1
        self.health = min(limit, max(0, self.health + delta))

    # --- lifecycle ----------------------------------------------------------------------

    def add_candidate(self, now: float, node: str, address: str) -> None:
        """A peer we were told about (seed, discovery): track it until it speaks for itself."""
        if node == self.node_id:
            return
        member = self.table.get(node)
        if member is None:
            self._forgotten.pop(node, None)
            self._record(now, Rumour(node, 0, "alive", address), None)
        elif member.status == "dead":
            self._retry_at(node, now)

    def restore(self, now: float, peers: dict[str, str]) -> None:
        """Remember peers (node -> address) from a persisted peer list, without gossiping them."""
        others = {node: address for node, address in peers.items() if node != self.node_id}
        live, alive, emit = self._live, self._alive, self.outbox.emit
        for node in self.table.restore_alive(others):  # the news _record would make, in bulk
            self.version += 1
            live[node] = alive[node] = None
            self._suspicions.pop(node, None)
            self._gone_since.pop(node, None)
            self._retries.pop(node, None)
            emit(MemberUp(node, others[node]))

    def leave(self) -> None:
        """Announce a graceful departure; stop probing."""
        self.incarnation += 1
        self.table.left(self.node_id, self.incarnation)
        self._touch(self.node_id)
        self._queue_self()
        self.leaving = True
        self._probe = None
