"""Wire messages: frozen, slotted dataclasses. The codec turns them into msgpack and back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Rumour:
    """News about one member, piggybacked on other messages (a MemberTable delta entry)."""

    node: str
    incarnation: int
    status: str
    address: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    by: str = ""
    """Who raised a suspicion (Lifeguard counts independent accusers); empty otherwise."""
    wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    """Its msgpack encoding, kept by the codec once made: a queued rumour is sent many times."""


@dataclass(frozen=True, slots=True)
class Ping:
    """A direct probe; `target` is who the prober believes it is talking to."""

    seq: int
    target: str
    rumours: tuple[Rumour, ...] = ()


@dataclass(frozen=True, slots=True)
class Ack:
    """The answer to a Ping (or a relayed answer to a PingReq)."""

    seq: int
    rumours: tuple[Rumour, ...] = ()


@dataclass(frozen=True, slots=True)
class PingReq:
    """Ask the recipient to probe `target` for us and relay the Ack under our `seq`."""

    seq: int
    target: str
    rumours: tuple[Rumour, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplicaDigest:
    """What a node has of one replica: its type tag and the type's digest (wire primitives)."""

    name: str
    tag: str
    digest: Any


@dataclass(frozen=True, slots=True)
class ReplicaDelta:
    """A delta of one replica: its type tag and the encoded delta (msgpack, or a Yjs update)."""

    name: str
    tag: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class SyncDigest:
    """Anti-entropy: my digests; send me the deltas I lack (and, if `reply`, your digests)."""

    sent_ms: int
    digests: tuple[ReplicaDigest, ...]
    reply: bool = True
    rumours: tuple[Rumour, ...] = ()


@dataclass(frozen=True, slots=True)
class SyncDelta:
    """Deltas, either answering a SyncDigest or pushed eagerly after local writes.

    A push has a `seq` (unique per batch and origin) and `hops` left for relaying; its
    `origin` is "" when the sender itself wrote it (a relay names the writer). An
    anti-entropy reply has origin "", seq 0 and hops 0.
    """

    sent_ms: int
    deltas: tuple[ReplicaDelta, ...]
    origin: str = ""
    seq: int = 0
    hops: int = 0
    rumours: tuple[Rumour, ...] = ()

    @property
    def is_push(self) -> bool:
        """Whether this is an eager push (acknowledged and deduplicated), not a sync reply."""
        return self.seq != 0


@dataclass(frozen=True, slots=True)
class Gossip:
    """Rumours alone, sent every gossip interval to a few random members."""

    rumours: tuple[Rumour, ...]


@dataclass(frozen=True, slots=True)
class PushAck:
    """Acknowledges push batch (origin, seq): the sender has merged it."""

    origin: str
    seq: int


@dataclass(frozen=True, slots=True)
class AppMessage:
    """An application message between services (send, call, reply, publish); the engine only
    carries it. `payload` is msgpack made by the sender; `headers` carry context (traceparent)."""

    kind: int
    channel: str
    payload: bytes
    target: str = ""
    """The registered instance a SEND or REQUEST is for ("" for any local one)."""
    corr: int = 0
    """Correlates a REQUEST with its REPLY or ERROR."""
    timeout_ms: int = 0
    """How long the caller waits for a REQUEST (0: no limit); the handler is cut off after it."""
    headers: Mapping[str, Any] = field(default_factory=dict)


APP_SEND = 0
APP_REQUEST = 1
APP_REPLY = 2
APP_ERROR = 3
APP_PUBLISH = 4
APP_BATCH = 5
"""Several application messages for one peer, in order: the payload is a msgpack list of
[kind, channel, payload, target, corr, timeout_ms, headers] (the services unpack it)."""
APP_KINDS = frozenset({APP_SEND, APP_REQUEST, APP_REPLY, APP_ERROR, APP_PUBLISH, APP_BATCH})


Message = Ping | Ack | PingReq | SyncDigest | SyncDelta | PushAck | Gossip | AppMessage
