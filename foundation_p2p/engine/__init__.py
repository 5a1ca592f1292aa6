"""The sans-IO protocol engine: membership, failure detection and replication."""

from foundation_p2p.engine.codec import PROTOCOL_VERSION, decode, encode
from foundation_p2p.engine.core import Engine
from foundation_p2p.engine.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from foundation_p2p.engine.events import (
    AppReceived,
    Event,
    MemberDown,
    MemberLeft,
    MemberSuspect,
    MemberUp,
    Output,
    ProtocolErrorEvent,
    PushAcked,
    ReplicaChanged,
    Send,
)
from foundation_p2p.engine.messages import AppMessage, Message
from foundation_p2p.engine.replication import MEMBERS, REPLICA_TYPES

__all__ = [
    "MEMBERS",
    "PROTOCOL_VERSION",
    "REPLICA_TYPES",
    "AppMessage",
    "AppReceived",
    "Engine",
    "Event",
    "LocalProtocolError",
    "MemberDown",
    "MemberLeft",
    "MemberSuspect",
    "MemberUp",
    "Message",
    "Output",
    "ProtocolError",
    "ProtocolErrorEvent",
    "PushAcked",
    "RemoteProtocolError",
    "ReplicaChanged",
    "Send",
    "decode",
    "encode",
]
