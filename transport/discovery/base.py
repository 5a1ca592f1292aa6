"""The Discovery protocol: strategies that yield candidate peers for the node to dial."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Candidate:
    """A peer worth dialing: its address ("host:port"), and its node id when known."""

    address: str
    node_id: str | None = None


@dataclass(frozen=True, slots=True)
class Announcement:
    """What this node tells discovery about itself (never the cluster key)."""

    cluster: str
    node_id: str
    address: str
    protocol_version: int


Found = Callable[[Candidate], None]


@runtime_checkable
class Discovery(Protocol):
    """A source of candidate peers. `run` keeps going until cancelled, so a peer that reboots
    or comes back after a partition is found again."""

    name: str

    async def run(self, me: Announcement, found: Found) -> None:
        """Announce `me` (if the strategy announces) and call `found` for each candidate."""
        ...

    async def close(self) -> None:
        """Stop announcing and release resources; idempotent."""
        ...


def parse_address(address: str) -> tuple[str, int]:
    """Split "host:port" (or "[v6]:port"); ValueError naming the address if malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"malformed address {address!r}: expected host:port with port 1-65535")
    return host.strip("[]"), int(port)
