"""The asyncio driver: real time and a real transport around the sans-IO engine.

Everything here runs on one event loop. The engine is called only from this loop, with
`now = time.time()`; its outputs go to the transport as encoded frames, and frames from the
transport come back to the engine decoded. Timers: one `call_later` for the engine's next
deadline, re-armed after every engine call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from foundation_p2p.engine import (
    AppMessage,
    Engine,
    Event,
    MemberDown,
    Output,
    ProtocolErrorEvent,
    RemoteProtocolError,
    Send,
    decode,
    encode,
)
from foundation_p2p.runtime.metrics import Observer
from transport.tcp import LogLimiter

log = logging.getLogger("foundation_p2p.runtime")


class TransportLike(Protocol):
    """What the driver needs from `transport.tcp.Transport`."""

    def send(self, peer_id: str, body: bytes, address: str | None = None) -> bool:
        """Queue a frame for a peer (dialing it if needed); False if dropped."""
        ...

    def disconnect(self, peer_id: str) -> bool:
        """Abort the connection to a peer; later sends dial afresh."""
        ...


class Driver:
    """Feeds the engine real time and the transport's frames; sends what the engine emits."""

    def __init__(
        self,
        engine: Engine,
        transport: TransportLike,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.transport = transport
        self.clock = clock
        self._listeners: list[Callable[[Event], None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._push_soon = False  # a push_due is queued on the loop
        self._pushing = False  # inside push_after: push_due follows the hand-over
        self._loop: asyncio.AbstractEventLoop | None = None
        self.observer = Observer(engine, clock)
        self._closed = False
        self.journal: Callable[[str, Any], None] | None = None
        """Persistence: called with each local write before the engine replicates it."""
        self.refusal_log = LogLimiter(log, clock=clock)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Begin ticking on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._handle(self.engine.tick(self.clock()))

    def stop(self) -> None:
        """Stop ticking (the transport is closed by its owner)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- inputs -------------------------------------------------------------------------------

    def on_frame(self, peer: str, body: bytes) -> None:
        """A frame from a peer: decode it and give it to the engine."""
        if self._closed:
            return
        try:
            message = decode(body)
        except RemoteProtocolError as exc:
            self.observer.frame_in(peer, None, len(body))
            self._handle(self.engine.refuse(peer, exc))
            return
        self.observer.frame_in(peer, message, len(body))
        self._handle(self.engine.receive(self.clock(), peer, message))

    def on_peer_up(self, peer: str, address: str) -> None:
        """A connection completed its handshake: the engine syncs with that peer."""
        if not self._closed:
            self._handle(self.engine.join(self.clock(), peer, address))

    def on_refused(self, reason: str, detail: str) -> None:
        """The transport refused a connection or frame (and logged it): count it like an engine
        refusal and tell the listeners."""
        self.engine.counters[f"refused.{reason}"] += 1
        self._emit(ProtocolErrorEvent("", reason, detail), logged=True)

    def on_peer_lost(self, peer: str) -> None:
        """A connection in use was closed by the peer or the network: the engine probes it at
        once."""
        if not self._closed:
            self._handle(self.engine.peer_disconnected(self.clock(), peer))

    def on_unreachable(self, peer: str, detail: str) -> None:
        """A dial to a peer was refused (nothing listens at its address): the engine suspects
        it at once."""
        if not self._closed:
            log.debug("%s is unreachable: %s", peer, detail)
            self._handle(self.engine.peer_unreachable(self.clock(), peer))

    def join(self, peer: str, address: str) -> None:
        """Contact a peer whose id is known (from a handshake or discovery)."""
        self._handle(self.engine.join(self.clock(), peer, address))

    def local_write(self, replica: str, delta: Any) -> None:
        """Replicate a delta already applied to a local replica."""
        if self.journal is not None:
            self.journal(replica, delta)
        now = self.clock()
        outputs = self.engine.local_write(replica, delta, now)
        due = self.engine.replication.push_at
        if due is None or due > now or self._loop is None or self._closed:
            self._handle(outputs)
            return
        # due now: pushed after this turn's other callbacks, or at once by push_due, with no
        # timer set and cancelled for it
        self._handle(outputs, arm=False)
        if not self._push_soon and not self._pushing:
            self._push_soon = True
            self._loop.call_soon(self.push_due)

    def push_after(self, hand_over: Callable[[], None]) -> None:
        """Run `hand_over` (which gives this turn's local writes to local_write), then
        push_due(): a due push is made and written in this same callback, with no loop turn,
        timer or queued callback between the write and the frame reaching the socket."""
        self._pushing = True
        try:
            hand_over()
        finally:
            self._pushing = False
        self.push_due()

    def push_due(self) -> None:
        """Run the engine's timers at once if one is due and write the frames they make without
        waiting for the loop turn to end (called once a turn's local writes are handed over,
        so a lone write reaches its peers one or two loop turns sooner)."""
        self._push_soon = False
        if self._closed:
            return
        now = self.clock()
        due = self.engine.replication.push_at  # the one timer a write sets
        if due is None or due > now:
            return
        outputs = self.engine.tick(now)
        send_now = getattr(self.transport, "send_now", None)  # a gate or a fake may lack it
        if send_now is not None:
            self._handle(outputs, send=send_now)
            return
        self._handle(outputs)
        flush_now = getattr(self.transport, "flush_now", None)
        if flush_now is not None:
            for dst in {output.dst for output in outputs if isinstance(output, Send)}:
                flush_now(dst)

    def send_app(self, dst: str, message: AppMessage) -> None:
        """Send an application message to peer `dst` through the engine."""
        if self._closed:
            return
        # no timer changes with a send: skip _handle's re-arming (the hot path of pub/sub)
        for output in self.engine.send_app(dst, message):
            if isinstance(output, Send):
                address = self.engine.membership.address_of(output.dst)
                if not self.transport.send(output.dst, encode(output.message), address):
                    self.engine.counters["send.dropped"] += 1

    def leave(self) -> None:
        """Announce a graceful departure."""
        self._handle(self.engine.leave(self.clock()))

    def subscribe(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """Call `listener(event)` for every engine event; returns an unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # --- outputs ------------------------------------------------------------------------------

    def _handle(
        self,
        outputs: list[Output],
        arm: bool = True,
        send: Callable[[str, bytes, str | None], bool] | None = None,
    ) -> None:
        membership = self.engine.membership
        send = send or self.transport.send
        for output in outputs:
            if isinstance(output, Send):
                body = encode(output.message)
                self.observer.frame_out(output.dst, output.message, len(body))
                if not send(output.dst, body, membership.address_of(output.dst)):
                    self.engine.counters["send.dropped"] += 1
            else:
                self._emit(output)
        if arm:
            self._arm()

    def _emit(self, event: Event, logged: bool = False) -> None:
        self.observer.event(event)
        if isinstance(event, MemberDown):
            # a connection to a dead member may be stuck behind a partition: retries redial
            self.transport.disconnect(event.node)
        if isinstance(event, ProtocolErrorEvent) and not logged:
            src = event.src or "?"
            self.refusal_log.warning(
                (event.reason, src), "refused from %s: %s %s", src, event.reason, event.detail
            )
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # an application callback must not stop the node
                log.exception("event listener failed on %r", event)

    def _arm(self) -> None:
        if self._closed or self._loop is None:
            return
        deadline = self.engine.next_deadline()
        if deadline is None:
            return
        if self._timer is not None:
            # a timer due no later stays: firing early only ticks an engine with nothing due
            # (and re-arms), which spares the push path a cancel and a call_later per write
            if self._timer_at is not None and self._timer_at <= deadline:
                return
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_later(max(0.0, deadline - self.clock()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        if not self._closed:
            self._handle(self.engine.tick(self.clock()))
