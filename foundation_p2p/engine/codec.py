"""The one codec: messages <-> msgpack bytes, with a protocol version. Bad bytes raise
RemoteProtocolError and never anything else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from crdts.base import INT64_MAX
from foundation_p2p.engine.errors import RemoteProtocolError
from foundation_p2p.engine.messages import (
    APP_KINDS,
    Ack,
    AppMessage,
    Gossip,
    Message,
    Ping,
    PingReq,
    PushAck,
    ReplicaDelta,
    ReplicaDigest,
    Rumour,
    SyncDelta,
    SyncDigest,
)

PROTOCOL_VERSION = 2
"""2: a SyncDelta push from its own writer leaves `origin` empty (the sender is the origin),
and a delta's type tag may travel as its index in DELTA_TAGS."""
DELTA_TAGS = (
    "ydoc",
    "members",
    "gcounter",
    "pncounter",
    "lwwregister",
    "mvregister",
    "aworset",
    "ormap",
    "lwwmap",
)
"""Replica type tags a ReplicaDelta sends as a one-byte index (append only: the index is wire)."""
_TAG_INDEX = {tag: index for index, tag in enumerate(DELTA_TAGS)}
STATUSES = ("alive", "suspect", "dead", "left")
_STATUS_SET = frozenset(STATUSES)

_CODES: dict[type, int] = {
    Ping: 1,
    Ack: 2,
    PingReq: 3,
    SyncDigest: 4,
    SyncDelta: 5,
    PushAck: 6,
    Gossip: 7,
    AppMessage: 8,
}


def encode(message: Message) -> bytes:
    """The msgpack body of a message: [version, type code, *fields]."""
    code = _CODES[type(message)]
    if isinstance(message, Ping | PingReq):
        fields: list[Any] = [message.seq, message.target]
    elif isinstance(message, Ack):
        fields = [message.seq]
    elif isinstance(message, SyncDigest):
        digests = [[d.name, d.tag, d.digest] for d in message.digests]
        fields = [message.sent_ms, digests, message.reply]
    elif isinstance(message, SyncDelta):
        deltas = [[d.name, _TAG_INDEX.get(d.tag, d.tag), d.payload] for d in message.deltas]
        fields = [message.sent_ms, deltas, message.origin, message.seq, message.hops]
    elif isinstance(message, Gossip):
        fields = []
    elif isinstance(message, AppMessage):
        fields = app_message_fields(message)
        return bytes(msgpack.packb([PROTOCOL_VERSION, code, *fields], use_bin_type=True))
    else:
        fields = [message.origin, message.seq]
        return bytes(msgpack.packb([PROTOCOL_VERSION, code, *fields], use_bin_type=True))
    # The rumours come last: the array of the other fields, one longer (at most 8 items, a
    # one-byte fixarray header), then the rumours' own encodings, each made once per rumour.
    head = msgpack.packb([PROTOCOL_VERSION, code, *fields], use_bin_type=True)
    return b"".join((_FIXARRAY[len(fields) + 3], head[1:], _rumours_wire(message.rumours)))


_FIXARRAY = tuple(bytes([0x90 + n]) for n in range(16))


def _rumours_wire(rumours: tuple[Rumour, ...]) -> bytes:
    """The msgpack array of `rumours`, as msgpack.packb would make it."""
    count = len(rumours)
    if count < 16:
        parts = [_FIXARRAY[count]]
    elif count < 1 << 16:
        parts = [b"\xdc" + count.to_bytes(2, "big")]
    else:
        parts = [b"\xdd" + count.to_bytes(4, "big")]
    for r in rumours:
        wire = r.wire
        if wire is None:
            wire = msgpack.packb(
                [r.node, r.incarnation, r.status, r.address, dict(r.metadata), r.by],
                use_bin_type=True,
            )
            object.__setattr__(r, "wire", wire)  # a cache, not state: excluded from equality
        parts.append(wire)
    return b"".join(parts)


def decode(body: bytes) -> Message:
    """Parse a body made by encode(); RemoteProtocolError for anything else."""
    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=False, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise RemoteProtocolError("malformed", f"not msgpack: {exc}") from None
    if not isinstance(obj, list) or len(obj) < 2:
        raise RemoteProtocolError("malformed", "a message is [version, type, ...]")
    version, code, *fields = obj
    if version != PROTOCOL_VERSION or type(version) is not int:
        raise RemoteProtocolError(
            "version", f"peer speaks protocol {version!r}, we speak {PROTOCOL_VERSION}"
        )
    parse = _PARSERS.get(code) if type(code) is int else None
    if parse is None:
        raise RemoteProtocolError("unknown_type", f"unknown message type {code!r}")
    try:
        return parse(fields)
    except RemoteProtocolError:
        raise
    except (TypeError, ValueError, LookupError) as exc:
        raise RemoteProtocolError("malformed", f"{type(exc).__name__}: {exc}") from None


# --- parsing helpers -----------------------------------------------------------------------


def _fields(fields: list[Any], count: int, what: str) -> list[Any]:
    if len(fields) != count:
        raise RemoteProtocolError(
            "malformed", f"{what}: expected {count} fields, got {len(fields)}"
        )
    return fields


def _int(value: Any, what: str, low: int = 0, high: int = INT64_MAX) -> int:
    if type(value) is not int or not low <= value <= high:
        raise RemoteProtocolError("malformed", f"{what}: expected an int in [{low}, {high}]")
    return value


def _str(value: Any, what: str, empty: bool = False) -> str:
    if type(value) is not str or (not empty and not value):
        raise RemoteProtocolError("malformed", f"{what}: expected a non-empty str")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if type(value) is not list:
        raise RemoteProtocolError("malformed", f"{what}: expected a list")
    return value


def _rumours_in(value: Any) -> tuple[Rumour, ...]:
    # The hot path of every gossip message: checks inlined rather than helper calls.
    if type(value) is not list:
        raise RemoteProtocolError("malformed", "rumours: expected a list")
    out = []
    for item in value:
        if type(item) is not list or len(item) != 6:
            raise RemoteProtocolError("malformed", "rumour: expected 6 fields")
        node, incarnation, status, address, metadata, by = item
        if (
            type(node) is not str
            or not node
            or type(incarnation) is not int
            or not 0 <= incarnation <= INT64_MAX
            or status not in _STATUS_SET
            or type(address) is not str
            or type(by) is not str
            or type(metadata) is not dict
        ):
            raise RemoteProtocolError("malformed", f"rumour: bad field in {item!r:.120}")
        if metadata and not all(type(k) is str for k in metadata):
            raise RemoteProtocolError("malformed", "rumour: metadata must be a str-keyed map")
        out.append(Rumour(node, incarnation, status, address, metadata, by))
    return tuple(out)


def _ping(fields: list[Any]) -> Ping:
    seq, target, rumours = _fields(fields, 3, "ping")
    return Ping(_int(seq, "seq"), _str(target, "ping target"), _rumours_in(rumours))


def _ack(fields: list[Any]) -> Ack:
    seq, rumours = _fields(fields, 2, "ack")
    return Ack(_int(seq, "seq"), _rumours_in(rumours))


def _ping_req(fields: list[Any]) -> PingReq:
    seq, target, rumours = _fields(fields, 3, "ping-req")
    return PingReq(_int(seq, "seq"), _str(target, "ping-req target"), _rumours_in(rumours))


def _sync_digest(fields: list[Any]) -> SyncDigest:
    sent_ms, digests, reply, rumours = _fields(fields, 4, "sync-digest")
    items = []
    for item in _list(digests, "digests"):
        name, tag, digest = _fields(_list(item, "digest"), 3, "digest")
        items.append(ReplicaDigest(_str(name, "replica name"), _str(tag, "replica type"), digest))
    if type(reply) is not bool:
        raise RemoteProtocolError("malformed", "sync-digest: reply must be a bool")
    return SyncDigest(_int(sent_ms, "sent_ms"), tuple(items), reply, _rumours_in(rumours))


def _sync_delta(fields: list[Any]) -> SyncDelta:
    sent_ms, deltas, origin, seq, hops, rumours = _fields(fields, 6, "sync-delta")
    items = []
    for item in _list(deltas, "deltas"):
        name, tag, payload = _fields(_list(item, "delta"), 3, "delta")
        if type(payload) is not bytes:
            raise RemoteProtocolError("malformed", "delta payload must be bytes")
        if type(tag) is int:
            tag = DELTA_TAGS[_int(tag, "replica type", 0, len(DELTA_TAGS) - 1)]
        items.append(ReplicaDelta(_str(name, "replica name"), _str(tag, "replica type"), payload))
    return SyncDelta(
        _int(sent_ms, "sent_ms"),
        tuple(items),
        _str(origin, "push origin", empty=True),
        _int(seq, "push seq"),
        _int(hops, "push hops", 0, 255),
        _rumours_in(rumours),
    )


def _push_ack(fields: list[Any]) -> PushAck:
    origin, seq = _fields(fields, 2, "push-ack")
    return PushAck(_str(origin, "push-ack origin"), _int(seq, "push-ack seq"))


def _gossip(fields: list[Any]) -> Gossip:
    (rumours,) = _fields(fields, 1, "gossip")
    return Gossip(_rumours_in(rumours))


def app_message_fields(message: AppMessage) -> list[Any]:
    """An AppMessage as its wire fields (what parse_app_message reads back)."""
    return [
        message.kind,
        message.channel,
        message.payload,
        message.target,
        message.corr,
        message.timeout_ms,
        message.headers,
    ]


def _app_message(fields: list[Any]) -> AppMessage:
    kind, channel, payload, target, corr, timeout_ms, headers = _fields(fields, 7, "app")
    if kind not in APP_KINDS or type(kind) is not int:
        raise RemoteProtocolError("malformed", f"app: unknown kind {kind!r}")
    if type(payload) is not bytes:
        raise RemoteProtocolError("malformed", "app: payload must be bytes")
    if type(headers) is not dict or not all(type(k) is str for k in headers):
        raise RemoteProtocolError("malformed", "app: headers must be a str-keyed map")
    return AppMessage(
        kind,
        _str(channel, "app channel"),
        payload,
        _str(target, "app target", empty=True),
        _int(corr, "app corr"),
        _int(timeout_ms, "app timeout_ms"),
        headers,
    )


def parse_app_message(fields: Any) -> AppMessage:
    """An AppMessage from its wire fields (as in a batch); RemoteProtocolError if malformed."""
    try:
        return _app_message(_list(fields, "app"))
    except RemoteProtocolError:
        raise
    except (TypeError, ValueError, LookupError) as exc:
        raise RemoteProtocolError("malformed", f"{type(exc).__name__}: {exc}") from None


_PARSERS: dict[int, Callable[[list[Any]], Message]] = {
    1: _ping,
    2: _ack,
    3: _ping_req,
    4: _sync_digest,
    5: _sync_delta,
    6: _push_ack,
    7: _gossip,
    8: _app_message,
}
