"""Yjs clients as peers of a SharedState: the y-websocket protocol at `/yjs/<state-name>`.

A browser tab or a Node.js program with `yjs` + `y-websocket` connects to any node's HTTP
server (`new WebsocketProvider("ws://host:port/yjs", "line-3", doc)`) and edits the document
behind `SharedState("line-3")`:

- sync: the node sends sync step 1 (its state vector) on connect and answers the client's step 1
  with step 2; a client's step 2 or update enters the SharedState as a local write of this node
  (`SharedState.apply_client_update`) and replicates like any other write; every change of the
  document, local, remote or from a client, is pushed to the clients as one update per loop turn;
- awareness (presence) is relayed to every client of the state on this node, the sender too
  (y-websocket reconnects after 30 s without a message; clients renew their state every 15 s);
  when a socket closes, the states it announced are removed for the others.

Incoming bytes are parsed strictly here, not by pycrdt's `handle_sync_message`: that one writes
straight into the pycrdt Doc, past the YDoc's rehearsal of peer updates and past replication,
and its decoder does not notice a truncated message. Replies use pycrdt's message builders.

Access: with a cluster key, a client presents a token (`?token=` or `Authorization: Bearer`):
`client_token(key)` for reading and writing every state, `client_token(key, "line-3")` for
reading that state only. Others get HTTP 401. Bad input — a wrong token, more clients than
`YjsLimits.max_clients_per_state`, a message over `max_message_bytes`, a malformed or text frame,
a client too slow to take its updates — closes that socket only, with a log line and a
`refused.yjs_*` counter.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web
from pycrdt import (
    Awareness,
    Doc,
    create_awareness_message,
    create_update_message,
    merge_updates,
    write_message,
)

from crdts import DecodeError, YDoc
from crdts.ydoc import EMPTY_UPDATE
from transport.security import Keyring

if TYPE_CHECKING:
    from foundation_p2p.node import Node
    from foundation_p2p.services.state import SharedState

log = logging.getLogger("foundation_p2p.yjs")

STATE_PREFIX = "state/"  # as foundation_p2p.services.state names SharedState replicas
TOKEN_PURPOSE = "yjs"
READ_TOKEN_PURPOSE = "yjs-read:"  # + the state's name
MESSAGE_SYNC, MESSAGE_AWARENESS, MESSAGE_QUERY_AWARENESS = 0, 1, 3
SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE = 0, 1, 2
CLOSE_MALFORMED = 4400  # application close codes (4000-4999): the peer sent bad input
CLOSE_SLOW = 4408


def client_token(key: bytes | str, state: str | None = None) -> str:
    """The token a Yjs client presents: reads and writes every state with `state=None`, reads
    only the state `state` otherwise. `key` is the cluster key (bytes or its text form)."""
    purpose = TOKEN_PURPOSE if state is None else READ_TOKEN_PURPOSE + state
    return Keyring(key).tokens(purpose)[0]


@dataclass
class YjsLimits:
    """Per-node limits of the Yjs endpoint (mutable: read at each connection and message)."""

    max_message_bytes: int = 4 * 1024 * 1024  # an update may carry many values of up to 1 MiB
    max_clients_per_state: int = 64
    max_queued_messages: int = 1024  # per client; a client that falls further behind is closed


LIMITS = web.AppKey("yjs_limits", YjsLimits)
ROOMS = web.AppKey("yjs_rooms", dict)


class MalformedMessage(ValueError):
    """A client sent bytes that are not a y-websocket message we accept."""


def add_yjs_routes(app: web.Application, node: Node) -> None:
    """Serve `/yjs/<state-name>` on `app` for `node`'s SharedStates."""
    app[LIMITS] = YjsLimits()
    app[ROOMS] = {}

    async def connect(request: web.Request) -> web.StreamResponse:
        return await _serve_client(node, request)

    async def close_all(app: web.Application) -> None:
        for room in list(app[ROOMS].values()):
            await room.close_all(WSCloseCode.GOING_AWAY, "node stopping")

    app.router.add_get("/yjs/{name:.+}", connect)
    app.on_shutdown.append(close_all)


# --- a connection ------------------------------------------------------------------------


async def _serve_client(node: Node, request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    engine = node._require_engine()
    read_only = _access(node, request, name)
    if read_only is None:
        log.warning("refused Yjs client %s for %r: missing or wrong token", request.remote, name)
        engine.counters["refused.yjs_token"] += 1
        raise web.HTTPUnauthorized(text="missing or wrong Yjs token")
    replica = engine.replication.replicas.get(STATE_PREFIX + name)
    if replica is not None and not isinstance(replica, YDoc):
        raise web.HTTPBadRequest(text=f"replica {STATE_PREFIX + name!r} is not a SharedState")
    try:
        state = node.shared_state(name)
    except (TypeError, ValueError) as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    limits = request.app[LIMITS]
    rooms: dict[str, _Room] = request.app[ROOMS]
    room = rooms.get(name)
    if room is not None and len(room.clients) >= limits.max_clients_per_state:
        log.warning("refused Yjs client %s for %r: %d clients already", request.remote, name,
                    len(room.clients))  # fmt: skip
        engine.counters["refused.yjs_clients"] += 1
        raise web.HTTPServiceUnavailable(text=f"state {name!r} has too many Yjs clients")

    ws = web.WebSocketResponse(max_msg_size=limits.max_message_bytes, autoping=True)
    await ws.prepare(request)  # not a WebSocket request: aiohttp answers 400
    room = rooms.get(name)
    if room is None:
        ydoc = engine.replica(STATE_PREFIX + name, YDoc)
        room = rooms[name] = _Room(name, state, ydoc, rooms, engine.counters)
    client = _Client(ws, read_only, limits.max_queued_messages, f"{request.remote} of {name!r}")
    room.join(client)
    try:
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                try:
                    room.receive(client, message.data)
                except MalformedMessage as exc:
                    log.warning("Yjs client %s: %s; closing it", client.peer, exc)
                    engine.counters["refused.yjs_malformed"] += 1
                    await ws.close(code=CLOSE_MALFORMED, message=b"malformed message")
                except RuntimeError as exc:  # NodeError: the node stopped under the client
                    log.info("Yjs client %s: %s; closing it", client.peer, exc)
                    await ws.close(code=WSCloseCode.GOING_AWAY, message=b"node stopping")
            elif message.type == WSMsgType.TEXT:
                log.warning("Yjs client %s sent a text frame; closing it", client.peer)
                engine.counters["refused.yjs_malformed"] += 1
                await ws.close(code=CLOSE_MALFORMED, message=b"y-websocket frames are binary")
            elif message.type == WSMsgType.ERROR:  # aiohttp has closed the socket already
                error = message.data
                if getattr(error, "code", None) == WSCloseCode.MESSAGE_TOO_BIG:
                    log.warning("Yjs client %s sent a message over %d bytes; closed it",
                                client.peer, limits.max_message_bytes)  # fmt: skip
                    engine.counters["refused.yjs_oversize"] += 1
                else:
                    log.info("Yjs client %s: %s", client.peer, error)
    finally:
        room.leave(client)
        await client.stop()
    return ws


def _access(node: Node, request: web.Request, name: str) -> bool | None:
    """False: may read and write; True: may read only; None: refused."""
    keyring = node.keyring
    if keyring is None:
        return False
    given = request.query.get("token") or request.headers.get("Authorization") or ""
    supplied = given.removeprefix("Bearer ").strip().encode("utf-8", "replace")
    if not supplied:
        return None
    if any(hmac.compare_digest(supplied, t.encode()) for t in keyring.tokens(TOKEN_PURPOSE)):
        return False
    read = keyring.tokens(READ_TOKEN_PURPOSE + name)
    if any(hmac.compare_digest(supplied, t.encode()) for t in read):
        return True
    return None


class _Client:
    """One WebSocket: its outbox (sent by its own task, so a slow client delays nobody)."""

    def __init__(self, ws: web.WebSocketResponse, read_only: bool, queued: int, peer: str):
        self.ws = ws
        self.read_only = read_only
        self.peer = peer
        self.awareness_ids: set[int] = set()
        self.slow = False
        self.warned_read_only = False
        self._closing: asyncio.Task[bool] | None = None  # held: a bare task may be collected
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=queued)
        self._sender = asyncio.get_running_loop().create_task(self._send_all())

    def send(self, message: bytes) -> bool:
        """Queue `message`; False (and the socket closing) if the client fell too far behind."""
        if self.slow:
            return True
        try:
            self._outbox.put_nowait(message)
        except asyncio.QueueFull:
            self.slow = True
            self._sender.cancel()
            self._closing = asyncio.get_running_loop().create_task(
                self.ws.close(code=CLOSE_SLOW, message=b"too slow")
            )
            return False
        return True

    async def _send_all(self) -> None:
        while (message := await self._outbox.get()) is not None:
            if self.ws.closed:
                return
            try:
                await self.ws.send_bytes(message)
            except (ConnectionError, RuntimeError):  # closed while sending
                return

    async def stop(self) -> None:
        """End the sender task."""
        self._sender.cancel()
        try:
            await self._sender
        except asyncio.CancelledError:
            pass


class _Room:
    """The clients of one SharedState on this node, its awareness, and the push of changes."""

    def __init__(
        self,
        name: str,
        state: SharedState,
        ydoc: YDoc,
        rooms: dict[str, _Room],
        counters: Counter[str],
    ) -> None:
        self.name = name
        self.counters = counters
        self.state = state
        self.ydoc = ydoc
        self.clients: list[_Client] = []
        self._rooms = rooms
        self._outgoing: list[bytes] = []
        self._flush_scheduled = False
        self.awareness = Awareness(Doc())
        self.awareness.set_local_state(None)  # the node itself announces no presence
        self._subscription: Any = ydoc.doc.observe(self._on_transaction)

    def join(self, client: _Client) -> None:
        """Greet a new client: our state vector (sync step 1) and who else is here."""
        self.clients.append(client)
        self.send(client, _sync_message(SYNC_STEP1, self.ydoc.digest()))
        present = list(self.awareness.states)
        if present:
            update = self.awareness.encode_awareness_update(present)
            self.send(client, create_awareness_message(update))

    def leave(self, client: _Client) -> None:
        """Drop a client; tell the others its presence is gone."""
        if client in self.clients:
            self.clients.remove(client)
        gone = [i for i in client.awareness_ids if i in self.awareness.states]
        if gone:
            self.awareness.remove_awareness_states(gone, client)
            self.broadcast(create_awareness_message(self.awareness.encode_awareness_update(gone)))
        self.close_if_empty()

    def close_if_empty(self) -> None:
        """Stop watching the document once no client is left."""
        if self.clients or self._rooms.get(self.name) is not self:
            return
        del self._rooms[self.name]
        try:
            self.ydoc.doc.unobserve(self._subscription)
        except Exception:  # the document went with a stopped node
            log.debug("could not unobserve the document of %r", self.name)

    async def close_all(self, code: int, reason: str) -> None:
        """Close every client (the node is stopping)."""
        for client in list(self.clients):
            await client.ws.close(code=code, message=reason.encode())

    def broadcast(self, message: bytes) -> None:
        """Send `message` to every client of this state."""
        for client in list(self.clients):
            self.send(client, message)

    def send(self, client: _Client, message: bytes) -> None:
        """Send `message` to `client`; close it if it cannot keep up."""
        if not client.send(message):
            log.warning("Yjs client %s fell too far behind; closing it", client.peer)
            self.counters["refused.yjs_slow"] += 1

    def receive(self, client: _Client, data: bytes) -> None:
        """Handle one message from `client`; MalformedMessage if it is not one we accept."""
        reader = _Reader(data)
        kind = reader.varuint()
        if kind == MESSAGE_SYNC:
            step = reader.varuint()
            payload = reader.var_bytes()
            reader.end()
            if step == SYNC_STEP1:
                try:
                    missing = self.ydoc.delta_since(payload)
                except DecodeError as exc:
                    raise MalformedMessage(f"bad state vector: {exc}") from None
                self.send(client, _sync_message(SYNC_STEP2, missing))
            elif step in (SYNC_STEP2, SYNC_UPDATE):
                if payload == EMPTY_UPDATE:
                    return
                if client.read_only:
                    if not client.warned_read_only:
                        client.warned_read_only = True
                        log.warning("Yjs client %s has a read-only token; its updates are "
                                    "dropped", client.peer)  # fmt: skip
                    self.counters["refused.yjs_readonly_update"] += 1
                    return
                try:
                    self.state.apply_client_update(payload)
                except DecodeError as exc:
                    raise MalformedMessage(f"bad update: {exc}") from None
            else:
                raise MalformedMessage(f"unknown sync step {step}")
        elif kind == MESSAGE_AWARENESS:
            payload = reader.var_bytes()
            reader.end()
            self._apply_awareness(client, payload)
            self.broadcast(create_awareness_message(payload))
        elif kind == MESSAGE_QUERY_AWARENESS:
            reader.end()
            present = list(self.awareness.states)
            self.send(
                client, create_awareness_message(self.awareness.encode_awareness_update(present))
            )
        else:
            raise MalformedMessage(f"unknown message type {kind}")

    def _apply_awareness(self, client: _Client, payload: bytes) -> None:
        seen: dict[str, list[int]] = {}

        def record(topic: str, change: tuple[dict[str, Any], Any]) -> None:
            if topic == "update" and change[1] is client:
                seen.update(change[0])

        watch = self.awareness.observe(record)
        try:
            self.awareness.apply_awareness_update(payload, client)
        except (RuntimeError, IndexError, ValueError, TypeError, KeyError) as exc:
            raise MalformedMessage(f"bad awareness update: {exc}") from None
        finally:
            self.awareness.unobserve(watch)
        client.awareness_ids.update(seen.get("added", ()), seen.get("updated", ()))
        client.awareness_ids.difference_update(seen.get("removed", ()))

    def _on_transaction(self, event: Any) -> None:
        # Called inside pycrdt's commit: only collect here, send on the next loop turn.
        update = bytes(event.update)
        if update == EMPTY_UPDATE:
            return
        self._outgoing.append(update)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        updates, self._outgoing = self._outgoing, []
        if not updates or not self.clients:
            return
        merged = updates[0] if len(updates) == 1 else bytes(merge_updates(*updates))
        self.broadcast(create_update_message(merged))


def _sync_message(step: int, payload: bytes) -> bytes:
    """A y-websocket sync message (pycrdt 0.14 exports only the builder for updates)."""
    return bytes((MESSAGE_SYNC, step)) + write_message(payload)


class _Reader:
    """Strict lib0 decoding: a varint longer than 64 bits, a length past the end or trailing
    bytes are MalformedMessage."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def varuint(self) -> int:
        value = shift = 0
        while True:
            if self.pos >= len(self.data):
                raise MalformedMessage("message ends inside a number")
            if shift > 63:
                raise MalformedMessage("number longer than 64 bits")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def var_bytes(self) -> bytes:
        length = self.varuint()
        end = self.pos + length
        if end > len(self.data):
            raise MalformedMessage(f"length {length} runs past the end of the message")
        out = self.data[self.pos : end]
        self.pos = end
        return bytes(out)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise MalformedMessage(f"{len(self.data) - self.pos} bytes after the message")
