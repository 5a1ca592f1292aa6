"""What the engine hands its driver: messages to send and events to report. Plain data."""

from __future__ import annotations

from dataclasses import dataclass

from foundation_p2p.engine.messages import AppMessage, Message


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver `message` to node `dst`."""

    dst: str
    message: Message


@dataclass(frozen=True, slots=True)
class MemberUp:
    """A member became alive (joined, recovered, or refuted a suspicion)."""

    node: str
    address: str


@dataclass(frozen=True, slots=True)
class MemberSuspect:
    """A member is suspected of having failed."""

    node: str


@dataclass(frozen=True, slots=True)
class MemberDown:
    """A member is confirmed dead."""

    node: str


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """A member left gracefully."""

    node: str


@dataclass(frozen=True, slots=True)
class ReplicaChanged:
    """A replica took in a non-empty delta; origin is "local" or the peer it came from."""

    name: str
    origin: str


@dataclass(frozen=True, slots=True)
class PushAcked:
    """Peer `node` has merged our push batch `seq`."""

    node: str
    seq: int


@dataclass(frozen=True, slots=True)
class WritesAcked:
    """Peer `node` holds every local write to replica `name` numbered `first`..`last` (the
    numbers `Engine.write_seq` gave them); from a push ack, or an anti-entropy round that found
    the peer's copy equal to ours (then `first` is 0)."""

    node: str
    name: str
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class ProtocolErrorEvent:
    """A message from `src` was refused; `reason` is a short counter key."""

    src: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class AppReceived:
    """An application message from peer `src`, for the services to deliver."""

    src: str
    message: AppMessage


Event = (
    MemberUp
    | MemberSuspect
    | MemberDown
    | MemberLeft
    | ReplicaChanged
    | PushAcked
    | WritesAcked
    | ProtocolErrorEvent
    | AppReceived
)
Output = Send | Event


class Outbox:
    """Collects the outputs of one engine call."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[Output] = []

    def send(self, dst: str, message: Message) -> None:
        """Queue a message for `dst`."""
        self.items.append(Send(dst, message))

    def emit(self, event: Event) -> None:
        """Queue an event."""
        self.items.append(event)

    def drain(self) -> list[Output]:
        """Everything queued since the last drain."""
        items, self.items = self.items, []
        return items
