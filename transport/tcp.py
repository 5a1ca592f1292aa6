"""Asyncio TCP transport: one long-lived framed connection per peer pair, optionally sealed.

Rules of this file: it moves bodies (bytes) between node ids and knows nothing of messages.
Everything a peer can get wrong (handshake, framing, keys) is refused the same way: a log line
(at most one per reason and peer every LOG_INTERVAL seconds, see LogLimiter), `counters[reason]
+= 1`, `on_refused(reason, detail)`, and that one connection closed.

Handshake: the first frame each way is a msgpack map {"protocol", "cluster", "node", "listen",
"nonce", "instance"} (sealed with the cluster name as AAD when there is a keyring), at most
HANDSHAKE_MAX_BYTES. The dialer sends first; the acceptor answers with its own as soon as the
dialer's looks like ours (even when about to refuse it, so that both ends log the same clear
reason), then validates it. Later frames are sealed with AAD = cluster name + receiver's nonce +
sender's nonce, so a frame recorded on one connection, or reflected to its sender, does not open.

One connection per pair: when a second connection to the same peer completes its handshake,
both ends keep the same one: the new one if the peer's `instance` changed (it restarted, so the
old connection is dead), else the one whose dialer has the smaller node id, else (both dialed by
the same node) the newer. The other is retired: nothing new is written to it, it is half-closed
after what was already written and read to its end, so no frame is lost in the switch (frames
may then arrive out of order, which the layer above tolerates as it would on UDP).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import struct
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, cast

import msgpack

from transport.errors import AuthenticationError, FrameTooLarge, FramingError, HandshakeError
from transport.framing import FrameDecoder
from transport.security import SEAL_OVERHEAD, SEAL_VERSION, Keyring

log = logging.getLogger("foundation_p2p.transport")

# Reason keys passed to on_refused and counted in Transport.counters.
REFUSAL_REASONS = (
    "cluster_mismatch",  # the peer belongs to another cluster
    "protocol_mismatch",  # the peer speaks another protocol version
    "own_id",  # the peer claims our own node id
    "auth_failed",  # a sealed frame did not open: wrong key, unknown key id, tampering
    "key_required",  # the peer sent plaintext but we hold a cluster key
    "key_unexpected",  # the peer sent a sealed handshake but we hold no key
    "bad_handshake",  # the first frame is not a handshake
    "handshake_timeout",  # no handshake within Limits.handshake_timeout
    "handshake_eof",  # the connection closed before the handshake completed
    "frame_too_large",  # a length prefix above Limits.max_frame_bytes
    "truncated_frame",  # the stream ended inside a frame
)

HANDSHAKE_MAX_BYTES = 64 * 1024  # an unauthenticated peer gets no bigger buffer than this
NONCE_BYTES = 16
INSTANCE_BYTES = 8
_MAX_NAME = 1024  # longest node id, cluster name or address accepted in a handshake
_BATCH_BYTES = 256 * 1024  # bytes joined into one write; more waits for the next loop turn
_WRITE_HIGH_WATER = 1024 * 1024  # socket buffer above which a connection stops taking frames
_REMEMBERED_PEERS = 10_000  # beyond this many known peers, idle ones are forgotten
_CLOSE_GRACE = 1.0  # seconds close() lets connections flush before aborting them
_prefix = struct.Struct(">I").pack
LOG_INTERVAL = 10.0  # seconds between two log lines of one refusal reason from one peer
_LOG_KEYS = 4096  # refusal keys remembered by a LogLimiter before the stale ones are dropped


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a peer may cost us; the defaults suit a LAN cluster."""

    max_frame_bytes: int = 16 * 1024 * 1024  # largest frame on the wire, sealing overhead included
    handshake_timeout: float = 5.0  # seconds a new connection has to complete its handshake
    idle_timeout: float = 60.0  # close a connection silent both ways this long (probes are 1 s)
    send_queue_frames: int = 10_000  # frames queued per peer; beyond, new frames are dropped
    reconnect_initial: float = 0.2  # first redial delay after a failed dial, then doubled...
    reconnect_max: float = 10.0  # ...up to this, each delay jittered to 50-100%

    def __post_init__(self) -> None:
        if self.max_frame_bytes <= SEAL_OVERHEAD:
            raise ValueError(f"max_frame_bytes must exceed {SEAL_OVERHEAD}")
        for name in ("handshake_timeout", "idle_timeout", "reconnect_initial", "reconnect_max"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.send_queue_frames < 1:
            raise ValueError("send_queue_frames must be at least 1")


def parse_address(address: str) -> tuple[str, int]:
    """(host, port) of "host:port" or "[v6-host]:port"; ValueError otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"an address is 'host:port', got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def format_address(host: str, port: int) -> str:
    """The "host:port" form of an address, with brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Transport:
    """Frames to and from peers by node id over TCP; call every method on the event loop."""

    def __init__(
        self,
        node_id: str,
        cluster: str,
        protocol_version: int,
        *,
        keyring: Keyring | None = None,
        limits: Limits | None = None,
        on_frame: Callable[[str, bytes], None],
        on_peer_up: Callable[[str, str], None] | None = None,
        on_peer_down: Callable[[str], None] | None = None,
        on_refused: Callable[[str, str], None] | None = None,
        on_unreachable: Callable[[str, str], None] | None = None,
        on_peer_lost: Callable[[str], None] | None = None,
    ) -> None:
        """`on_unreachable(peer_id, detail)`: a dial to a known peer was refused outright
        (nothing listens at its address: the process is gone or restarting).
        `on_peer_lost(peer_id)`: a connection in use (active within half the idle timeout) was
        closed by the peer or the network, not by us; unlike `on_peer_down`, an idle close does
        not count, so acting on it never undoes idle closing."""
        if not node_id:
            raise ValueError("node_id must not be empty")
        self.node_id = node_id
        self.cluster = cluster
        self.protocol_version = protocol_version
        self.keyring = keyring
        self.limits = limits or Limits()
        self.counters: Counter[str] = Counter()
        self.listen_address = ""
        self._on_frame = on_frame
        self._on_peer_up = on_peer_up
        self._on_peer_down = on_peer_down
        self._on_refused = on_refused
        self._on_unreachable = on_unreachable
        self._on_peer_lost = on_peer_lost
        self.refusal_log = LogLimiter(log)
        self._cluster_aad = cluster.encode("utf-8")
        self._max_body = self.limits.max_frame_bytes - (SEAL_OVERHEAD if keyring else 0)
        self._queue_limit = self.limits.send_queue_frames
        self._peers: dict[str, _Peer] = {}
        self._connections: set[_Connection] = set()
        self._dials: dict[str, asyncio.Task[str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._closing = False
        self._closed: asyncio.Event | None = None
        self._rng = random.Random()
        self._instance = os.urandom(INSTANCE_BYTES)  # tells a restarted peer from its old self

    async def start(self, listen: str = "127.0.0.1:0", *, advertise: str | None = None) -> str:
        """Listen on `listen` ("host:port"; port 0 picks one) and return the address advertised
        to peers: `advertise` if given, else the bound host and port."""
        if self._server is not None or self._closing:
            raise RuntimeError("a Transport is started once and not after close()")
        host, port = parse_address(listen)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self, None), host, port)
        bound_port = self._server.sockets[0].getsockname()[1]
        self.listen_address = advertise or format_address(host, bound_port)
        self._start_sweeper()
        return self.listen_address

    def send(self, peer_id: str, body: bytes, address: str | None = None) -> bool:
        """Queue `body` for a peer, dialing it in the background if needed (`address`, or the
        one remembered from its handshake); False when dropped (queue full, no address, too big,
        closed), each drop counted under "dropped_<why>"."""
        peer = self._peers.get(peer_id)
        if peer is not None and not self._closing:
            if address is not None:
                peer.address = address
            connection = peer.active
            queue = peer.queue
            if (
                connection is not None
                and len(queue) < self._queue_limit
                and len(body) <= self._max_body
            ):
                queue.append(body)
                if not connection.flush_pending:
                    connection.schedule_flush()
                return True
        return self._send_slowly(peer, peer_id, body, address)

    def send_now(self, peer_id: str, body: bytes, address: str | None = None) -> bool:
        """send(), and write the peer's queue in this call rather than at the end of the loop
        turn when its connection is open (a frame that is due, a push, neither waits a turn
        nor leaves a callback queued that would cost the loop one more turn before it sleeps)."""
        peer = self._peers.get(peer_id)
        connection = peer.active if peer is not None else None
        if (
            peer is None
            or connection is None
            or self._closing
            or len(peer.queue) >= self._queue_limit
            or len(body) > self._max_body
        ):
            return self.send(peer_id, body, address)
        if address is not None:
            peer.address = address
        peer.queue.append(body)
        connection.flush()  # a paused connection keeps it queued until resume_writing
        return True

    def flush_now(self, peer_id: str) -> None:
        """Write a peer's queued frames now rather than at the end of this loop turn (a push
        that is ready need not wait one more turn); the usual batching limits still apply."""
        peer = self._peers.get(peer_id)
        if peer is not None and peer.active is not None and peer.queue:
            peer.active.flush()

    async def connect(self, address: str, timeout: float = 5.0) -> str:
        """Dial `address` and complete the handshake; the peer's node id. HandshakeError (with
        `.reason` and a clear message) if it is unreachable, refuses, or times out."""
        if self._closing:
            raise HandshakeError("closed", "the transport is closed")
        return await self._dial_once(address, timeout)

    def disconnect(self, peer_id: str) -> bool:
        """Abort the connection to a peer the layer above gave up on (declared dead).

        A partition drops packets silently, so TCP keeps a stuck connection open for minutes;
        without this, retries to the peer would queue behind it instead of dialing afresh.
        """
        peer = self._peers.get(peer_id)
        if peer is None or peer.active is None:
            return False
        connection = peer.active
        peer.queue.clear()
        self.counters["disconnected"] += 1
        connection.closed_by_us = True
        connection.abort()
        return True

    def peers(self) -> dict[str, str]:
        """Connected peers: node id -> the listen address it advertised."""
        return {
            node: peer.active.peer_listen
            for node, peer in self._peers.items()
            if peer.active is not None
        }

    def queued(self, peer_id: str) -> int:
        """Frames waiting to be written to a peer."""
        peer = self._peers.get(peer_id)
        return len(peer.queue) if peer is not None else 0

    async def close(self) -> None:
        """Stop listening, close every connection and wait for it; no callbacks after this.
        Idempotent."""
        if self._closed is not None:
            await self._closed.wait()
            return
        self._closed = asyncio.Event()
        self._closing = True
        try:
            await self._shut_down()
        finally:
            self._closed.set()

    async def _shut_down(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        connections = list(self._connections)
        for connection in connections:
            connection.flush(final=True)  # e.g. the leave notice sent just before close()
            connection.close()
        if connections:
            _, stuck = await asyncio.wait([c.lost for c in connections], timeout=_CLOSE_GRACE)
            for connection in connections:
                if not connection.lost.done():
                    connection.abort()
            if stuck:
                await asyncio.wait(stuck, timeout=_CLOSE_GRACE)
        if self._server is not None:
            await self._server.wait_closed()
        for peer in self._peers.values():
            peer.active = None
            peer.queue.clear()

    def _send_slowly(
        self, peer: _Peer | None, peer_id: str, body: bytes, address: str | None
    ) -> bool:
        """send() for every case but a connected peer with room in its queue."""
        if self._closing:
            return self._drop("closed")
        if peer is None:
            if peer_id == self.node_id:
                return self._drop("self")
            if address is None:
                return self._drop("no_address")
            peer = self._peers[peer_id] = _Peer(peer_id, address)
        if len(body) > self._max_body:
            log.warning("dropped a %d-byte frame for %r: above max_frame_bytes", len(body), peer_id)
            return self._drop("too_large")
        if len(peer.queue) >= self._queue_limit:
            return self._drop("queue_full")
        if peer.active is not None:  # only reached when the queue was full
            return self._drop("queue_full")
        if peer.address is None:
            return self._drop("no_address")
        peer.queue.append(body)
        if peer.dial_task is None:
            self._start_redial(peer)
        return True

    # -- connections --------------------------------------------------------------------------

    def _hello(self, nonce: bytes) -> bytes:
        hello = msgpack.packb(
            {
                "protocol": self.protocol_version,
                "cluster": self.cluster,
                "node": self.node_id,
                "listen": self.listen_address,
                "nonce": nonce,
                "instance": self._instance,
            }
        )
        return self.keyring.seal(hello, self._cluster_aad) if self.keyring else hello

    def _read_hello(self, frame: bytes) -> _Hello:
        """The peer's handshake, or _Refusal saying why it cannot be one of ours."""
        if self.keyring is not None:
            try:
                plain = self.keyring.open(frame, self._cluster_aad)
            except AuthenticationError as exc:
                if _parse_hello(frame) is not None:
                    raise _Refusal(
                        "key_required", "it sent an unencrypted handshake but we require a key"
                    ) from None
                raise _Refusal(
                    "auth_failed",
                    f"cannot open its handshake: {exc}; do both sides hold the same cluster key?",
                ) from None
            hello = _parse_hello(plain)
        else:
            hello = _parse_hello(frame)
            if hello is None and len(frame) >= SEAL_OVERHEAD and frame[0] == SEAL_VERSION:
                raise _Refusal(
                    "key_unexpected", "it sent an encrypted handshake but we have no key"
                )
        if hello is None:
            raise _Refusal("bad_handshake", "its first frame is not a handshake")
        return hello

    def _check_hello(self, hello: _Hello) -> None:
        if hello.cluster != self.cluster:
            raise _Refusal(
                "cluster_mismatch", f"cluster {hello.cluster!r} != ours {self.cluster!r}"
            )
        if hello.protocol != self.protocol_version:
            raise _Refusal(
                "protocol_mismatch",
                f"protocol version {hello.protocol} != ours {self.protocol_version}",
            )
        if hello.node == self.node_id:
            raise _Refusal("own_id", f"it claims our own node id {self.node_id!r}")

    def _established(self, connection: _Connection) -> None:
        peer = self._peers.get(connection.peer_id)
        if peer is None:
            peer = self._peers[connection.peer_id] = _Peer(connection.peer_id)
        # A dialed address is known to work; an accepted peer's advertised one may be a wildcard.
        if connection.dialed is not None:
            peer.address = connection.dialed
        elif _dialable(connection.peer_listen):
            peer.address = connection.peer_listen
        current = peer.active
        if current is not None:
            self.counters["duplicate_connections"] += 1
            if not self._prefer(connection, current):
                connection.retire()
                return
        peer.active = connection
        connection.peer = peer
        peer.failures = 0
        peer.next_dial_at = 0.0
        if current is not None:
            current.retire()
        elif not self._closing and self._on_peer_up is not None:
            _call(self._on_peer_up, connection.peer_id, connection.peer_listen)
        if peer.queue:
            connection.schedule_flush()

    def _prefer(self, new: _Connection, old: _Connection) -> bool:
        """Whether `new` replaces `old`: both ends of the pair reach the same answer."""
        if new.peer_instance != old.peer_instance:
            return True  # the peer restarted: the old connection belongs to its previous life
        new_dialer = self.node_id if new.dialed is not None else new.peer_id
        old_dialer = self.node_id if old.dialed is not None else old.peer_id
        if new_dialer != old_dialer:
            return new_dialer < old_dialer
        return True  # redialed by the same node: the older one is likely dead

    def _lost(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        if len(self._peers) > _REMEMBERED_PEERS:
            self._forget_idle_peers()
        peer = connection.peer
        if peer is None or peer.active is not connection:
            return
        peer.active = None
        if self._closing:
            return
        if self._on_peer_down is not None:
            _call(self._on_peer_down, connection.peer_id)
        if self._on_peer_lost is not None and not connection.closed_by_us:
            quiet = asyncio.get_running_loop().time() - connection.last_activity
            if quiet < self.limits.idle_timeout / 2:
                _call(self._on_peer_lost, connection.peer_id)
        if peer.queue and peer.address is not None and peer.dial_task is None:
            self._start_redial(peer)

    def _forget_idle_peers(self) -> None:
        """Bound the table that node ids chosen by peers can grow: drop the idle entries."""
        for node, peer in list(self._peers.items()):
            if peer.active is None and not peer.queue and peer.dial_task is None:
                del self._peers[node]

    def _refused(self, reason: str, message: str, source: str) -> None:
        self.refusal_log.warning((reason, source), "%s", message)
        self.counters[reason] += 1
        if self._on_refused is not None and not self._closing:
            _call(self._on_refused, reason, message)

    # -- dialing ------------------------------------------------------------------------------

    async def _dial_once(self, address: str, timeout: float) -> str:
        """Dial `address`, sharing one attempt between concurrent callers for the same address
        (two dials in flight to one peer would defeat the one-connection rule)."""
        task = self._dials.get(address)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._dial(address, timeout))
            self._dials[address] = task
            self._tasks.add(task)
            task.add_done_callback(lambda done: self._dial_done(address, done))
        return await asyncio.shield(task)

    def _dial_done(self, address: str, task: asyncio.Task[str]) -> None:
        self._tasks.discard(task)
        if self._dials.get(address) is task:
            del self._dials[address]
        if not task.cancelled():
            task.exception()  # retrieved here so an abandoned dial logs nothing spurious

    async def _dial(self, address: str, timeout: float) -> str:
        try:
            host, port = parse_address(address)
        except ValueError as exc:
            raise HandshakeError("bad_address", str(exc)) from None
        self._start_sweeper()
        made: list[_Connection] = []

        def factory() -> _Connection:
            made.append(_Connection(self, address))
            return made[-1]

        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(factory, host, port)
                established = made[0].established
                assert established is not None
                return await established
        except TimeoutError:
            detail = f"no handshake from {address} within {timeout:g}s"
            if made and made[0].state is _HANDSHAKE:
                made[0].refuse("handshake_timeout", detail)
            raise HandshakeError("handshake_timeout", detail) from None
        except OSError as exc:
            raise HandshakeError(
                "unreachable", f"cannot reach {address}: {exc.strerror or exc}"
            ) from exc

    def _start_redial(self, peer: _Peer) -> None:
        if self._closing:
            return
        task = asyncio.get_running_loop().create_task(self._redial(peer))
        peer.dial_task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _redial(self, peer: _Peer) -> None:
        """Background dial for queued frames, after the backoff of earlier failures."""
        try:
            delay = peer.next_dial_at - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)
            address = peer.address
            if peer.active is not None or self._closing or address is None:
                return
            try:
                node = await self._dial_once(address, self.limits.handshake_timeout)
            except HandshakeError as exc:
                self._dial_failed(peer, str(exc))
                refused = isinstance(exc.__cause__, ConnectionRefusedError)
                if refused and peer.active is None and self._on_unreachable is not None:
                    if not self._closing:
                        _call(self._on_unreachable, peer.node_id, str(exc))
                return
            if node != peer.node_id:
                log.warning("address %s now belongs to %r, not %r", address, node, peer.node_id)
                if peer.address == address:
                    peer.address = None
                self._dial_failed(peer, f"{address} is now {node!r}")
        finally:
            peer.dial_task = None

    def _dial_failed(self, peer: _Peer, why: str) -> None:
        self.counters["dial_failed"] += 1
        if peer.active is not None:
            return  # the peer dialed us meanwhile; its queue is being written
        peer.failures += 1
        backoff = min(
            self.limits.reconnect_max,
            self.limits.reconnect_initial * 2 ** min(peer.failures - 1, 30),
        )
        backoff *= 0.5 + self._rng.random() / 2
        peer.next_dial_at = asyncio.get_running_loop().time() + backoff
        dropped = len(peer.queue)
        peer.queue.clear()
        if dropped:
            self.counters["dropped_unreachable"] += dropped
        log.debug(
            "dial to %r failed (%s): %d queued frames dropped, next dial in %.2fs",
            peer.node_id,
            why,
            dropped,
            backoff,
        )

    def _drop(self, why: str) -> bool:
        self.counters[f"dropped_{why}"] += 1
        return False

    # -- idle connections ---------------------------------------------------------------------

    def _start_sweeper(self) -> None:
        if self._sweeper is None and not self._closing:
            self._sweep()

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        idle = self.limits.idle_timeout
        for connection in list(self._connections):
            if connection.state is not _HANDSHAKE and now - connection.last_activity > idle:
                log.info("closing connection to %r: idle for %gs", connection.peer_id, idle)
                self.counters["idle_closed"] += 1
                connection.closed_by_us = True
                connection.close()
        self._sweeper = loop.call_later(min(1.0, idle / 4), self._sweep)


class LogLimiter:
    """Log at most one line per key every `interval` seconds; a line that follows suppressed
    ones says how many were suppressed (count every event elsewhere: this only spares the log)."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._keys: dict[Hashable, list[float]] = {}  # key -> [last line at, suppressed since]

    def warning(self, key: Hashable, message: str, *args: Any) -> bool:
        """Log `message % args` as a warning unless `key` logged within the interval; whether
        it was logged."""
        now = self.clock()
        entry = self._keys.get(key)
        if entry is not None and now - entry[0] < self.interval:
            entry[1] += 1
            return False
        if entry is None and len(self._keys) >= _LOG_KEYS:
            self._forget(now)
        suppressed = int(entry[1]) if entry is not None else 0
        self._keys[key] = [now, 0]
        if suppressed:
            message += " (%d more like it suppressed in the last %gs)"
            args = (*args, suppressed, self.interval)
        self.logger.warning(message, *args, stacklevel=2)
        return True

    def _forget(self, now: float) -> None:
        self._keys = {k: v for k, v in self._keys.items() if now - v[0] < self.interval}
        if len(self._keys) >= _LOG_KEYS:  # a flood from ever new sources: start afresh
            self._keys.clear()


@dataclass(eq=False, slots=True)
class _Peer:
    node_id: str
    address: str | None = None
    queue: deque[bytes] = field(default_factory=deque)
    active: _Connection | None = None
    dial_task: asyncio.Task[None] | None = None
    failures: int = 0
    next_dial_at: float = 0.0


@dataclass(frozen=True, slots=True)
class _Hello:
    protocol: int
    cluster: str
    node: str
    listen: str
    nonce: bytes
    instance: bytes


class _Refusal(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _parse_hello(data: bytes) -> _Hello | None:
    try:
        fields = msgpack.unpackb(data, raw=False)
    except Exception:  # msgpack raises a handful of unrelated types on garbage
        return None
    if not isinstance(fields, dict):
        return None
    protocol, cluster, node, listen, nonce, instance = (
        fields.get(key) for key in ("protocol", "cluster", "node", "listen", "nonce", "instance")
    )
    if (
        type(protocol) is not int
        or not all(isinstance(name, str) and len(name) <= _MAX_NAME for name in (cluster, listen))
        or not isinstance(node, str)
        or not 0 < len(node) <= _MAX_NAME
        or not isinstance(nonce, bytes)
        or len(nonce) != NONCE_BYTES
        or not isinstance(instance, bytes)
        or len(instance) != INSTANCE_BYTES
    ):
        return None
    return _Hello(protocol, cast(str, cluster), node, cast(str, listen), nonce, instance)


def _dialable(address: str) -> bool:
    """Whether an advertised address can be dialed as it is (not empty, not a wildcard)."""
    try:
        host, port = parse_address(address)
    except ValueError:
        return False
    return port != 0 and host not in ("", "0.0.0.0", "::")


def _call(callback: Callable[..., None], *args: Any) -> None:
    try:
        callback(*args)
    except Exception:  # a bug above us must not take the connection down with it
        log.exception("transport callback %r failed", callback)


_HANDSHAKE, _OPEN, _RETIRING, _CLOSED = "handshake", "open", "retiring", "closed"


class _Connection(asyncio.Protocol):
    """One TCP connection: its handshake, its reading, and writing its peer's queue."""

    def __init__(self, owner: Transport, dialed: str | None) -> None:
        self.owner = owner
        self.dialed = dialed  # the address we dialed; None for an accepted connection
        self.remote = dialed or "?"
        self.state = _HANDSHAKE
        self.peer_id = ""
        self.peer_listen = ""
        self.peer_instance = b""
        self.peer: _Peer | None = None  # set while this is the peer's active connection
        self.nonce = os.urandom(NONCE_BYTES)
        self.aad_in = b""
        self.aad_out = b""
        limit = min(HANDSHAKE_MAX_BYTES, owner.limits.max_frame_bytes)
        self.decoder = FrameDecoder(limit)
        self.loop = asyncio.get_running_loop()
        self.established: asyncio.Future[str] | None = (
            self.loop.create_future() if dialed is not None else None
        )
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.paused = False
        self.flush_pending = False
        self.last_activity = self.loop.time()
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.closed_by_us = False  # idle or disconnect(): no evidence about the peer

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.dialed is None:
            peer = transport.get_extra_info("peername")
            if isinstance(peer, tuple):
                self.remote = format_address(str(peer[0]), int(peer[1]))
        if self.owner._closing:
            self.state = _CLOSED
            self.transport.abort()
            return
        self.owner._connections.add(self)
        self.transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None and hasattr(socket, "TCP_USER_TIMEOUT"):
            # Idleness only catches silence; this drops a connection whose writes go unacked
            # (a peer cut off by a partition), which would otherwise linger for many minutes.
            timeout_ms = int(self.owner.limits.idle_timeout * 1000)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)
        timeout = self.owner.limits.handshake_timeout
        self.timer = self.loop.call_later(
            timeout, self.refuse, "handshake_timeout", f"no handshake within {timeout:g}s"
        )
        if self.dialed is not None:
            self._write(self.owner._hello(self.nonce))

    def data_received(self, data: bytes) -> None:
        if self.state is _CLOSED:
            return
        self.last_activity = self.loop.time()
        try:
            self.decoder.receive_data(data)
            while self.state is not _CLOSED and (frames := self.decoder.frames()):
                self._receive(frames)
        except FrameTooLarge as exc:
            self.refuse("frame_too_large", str(exc))
        except AuthenticationError as exc:
            self.refuse("auth_failed", f"a frame does not open: {exc}")

    def eof_received(self) -> bool | None:
        if self.state is _CLOSED:
            return None
        try:
            self.decoder.receive_eof()
        except FramingError as exc:
            self.refuse("truncated_frame", str(exc))
            return None
        if self.state is _HANDSHAKE:
            self.refuse("handshake_eof", "it closed the connection during the handshake")
        else:
            self.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state is _HANDSHAKE:
            self.refuse("handshake_eof", "the connection was lost during the handshake")
        self.state = _CLOSED
        if self.timer is not None:
            self.timer.cancel()
        if not self.lost.done():
            self.lost.set_result(None)
        self.owner._lost(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.schedule_flush()

    # -- used by Transport --------------------------------------------------------------------

    def schedule_flush(self) -> None:
        """Write the peer's queue on the next loop turn, joined with whatever else is queued."""
        if not self.flush_pending:
            self.flush_pending = True
            self.loop.call_soon(self.flush)

    def flush(self, final: bool = False) -> None:
        """Write up to _BATCH_BYTES of the peer's queue in one write (all of it if `final`,
        even to a peer that is not keeping up)."""
        self.flush_pending = False
        peer = self.peer
        if self.state is not _OPEN or peer is None or peer.active is not self:
            return
        if self.paused and not final:
            return
        queue = peer.queue
        if not queue:
            return
        parts: list[bytes] = []
        size = 0
        limit = _BATCH_BYTES if not final else float("inf")
        popleft = queue.popleft
        if self.owner.keyring is None:
            while queue and size < limit:
                body = popleft()
                parts += (_prefix(len(body)), body)
                size += 4 + len(body)
        else:
            seal = self.owner.keyring.seal
            aad = self.aad_out
            while queue and size < limit:
                sealed = seal(popleft(), aad)
                parts += (_prefix(len(sealed)), sealed)
                size += 4 + len(sealed)
        assert self.transport is not None
        self.transport.write(b"".join(parts))
        self.last_activity = self.loop.time()
        if queue:
            self.schedule_flush()

    def refuse(self, reason: str, detail: str) -> None:
        """Refuse this connection: log, count, tell the dialer's connect(), close."""
        if self.state is _CLOSED:
            return
        if self.peer_id:
            who = f"peer {self.peer_id!r} at {self.remote}"
        else:
            who = f"connection {'to' if self.dialed else 'from'} {self.remote}"
        message = f"refused {who}: {detail}"
        self.state = _CLOSED  # before the callbacks, which may close the transport
        self.closed_by_us = True
        # a hostile peer opens connection after connection: key its log lines by host, not port
        source = self.peer_id or self.remote.rpartition(":")[0]
        self.owner._refused(reason, message, source)
        if self.established is not None and not self.established.done():
            self.established.set_exception(HandshakeError(reason, message))
        self._shut()

    def retire(self) -> None:
        """Stop writing new frames here; half-close after what was written, read to the end."""
        if self.state is not _OPEN:
            return
        self.state = _RETIRING
        assert self.transport is not None
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.timer = self.loop.call_later(self.owner.limits.handshake_timeout, self.close)

    def close(self) -> None:
        """Close after flushing what is already written."""
        if self.state is not _CLOSED:
            self.state = _CLOSED
            self._shut()

    def abort(self) -> None:
        """Close now, discarding unwritten bytes."""
        self.state = _CLOSED
        if self.transport is not None:
            self.transport.abort()

    # -- internals ----------------------------------------------------------------------------

    def _receive(self, frames: list[bytes]) -> None:
        owner = self.owner
        keyring = owner.keyring
        on_frame = owner._on_frame
        for frame in frames:
            if self.state is _HANDSHAKE:
                self._receive_hello(frame)
                continue
            if self.state is _CLOSED or owner._closing:
                return
            body = frame if keyring is None else keyring.open(frame, self.aad_in)
            try:
                on_frame(self.peer_id, body)
            except Exception:  # a bug above us must not take the connection down with it
                log.exception("on_frame failed for a frame from %r", self.peer_id)

    def _receive_hello(self, frame: bytes) -> None:
        owner = self.owner
        try:
            hello = owner._read_hello(frame)
        except _Refusal as refusal:
            if self.dialed is None and refusal.reason != "bad_handshake":
                self._write(owner._hello(self.nonce))  # so the dialer can say what is wrong
            self.refuse(refusal.reason, refusal.detail)
            return
        self.peer_id = hello.node
        if self.dialed is None:
            self._write(owner._hello(self.nonce))
        try:
            owner._check_hello(hello)
        except _Refusal as refusal:
            self.refuse(refusal.reason, refusal.detail)
            return
        self.peer_listen = hello.listen
        self.peer_instance = hello.instance
        self.aad_in = owner._cluster_aad + self.nonce + hello.nonce
        self.aad_out = owner._cluster_aad + hello.nonce + self.nonce
        self.decoder.max_frame_bytes = owner.limits.max_frame_bytes
        self.state = _OPEN
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.established is not None and not self.established.done():
            self.established.set_result(self.peer_id)
        owner._established(self)

    def _write(self, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(_prefix(len(body)) + body)
        self.last_activity = self.loop.time()

    def _shut(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.close()
