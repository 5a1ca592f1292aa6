"""The SWIM member table as a lattice: per node, the news with the highest precedence wins.

Precedence: a higher incarnation wins; at equal incarnation left > dead > suspect > alive.
Two claims equal on both (only a misbehaving node makes them) are ordered by their encoded
address and metadata, so every replica still picks the same one.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator, Mapping
from typing import Any, Literal, NamedTuple

import msgpack

from crdts.base import (
    INT64_MAX,
    DecodeError,
    WireValue,
    canonical,
    check_replica,
    check_text,
    decoding,
    expect_dict,
    expect_header,
    expect_int,
    expect_list,
    expect_str,
    normalize_value,
    value_from_wire,
)

Status = Literal["alive", "suspect", "dead", "left"]
STATUS_RANK: dict[str, int] = {"alive": 0, "suspect": 1, "dead": 2, "left": 3}
STATUSES: tuple[Status, ...] = ("alive", "suspect", "dead", "left")


class Member(NamedTuple):
    """What the cluster believes about one node."""

    incarnation: int
    status: Status
    address: str = ""
    metadata: Mapping[str, Any] = {}

    def precedence(self) -> tuple[int, int, bytes]:
        """The order in which news about a node supersedes older news."""
        return (self.incarnation, STATUS_RANK[self.status], self._details())

    def _details(self) -> bytes:
        # canonical (sorted) so that equal metadata built in another key order compares equal
        return bytes(msgpack.packb(canonical([self.address, dict(self.metadata)])))

    def details_crc(self) -> int:
        """A checksum of address and metadata, for digests."""
        return zlib.crc32(self._details())

    def beats(self, other: Member) -> bool:
        """Whether this news supersedes `other` (cheap unless both agree on the first two)."""
        if self.incarnation != other.incarnation:
            return self.incarnation > other.incarnation
        mine, theirs = STATUS_RANK[self.status], STATUS_RANK[other.status]
        if mine != theirs:
            return mine > theirs
        return self != other and self._details() > other._details()


class MemberTable:
    """Node id -> Member, merged by SWIM precedence."""

    TAG = "members"
    VERSION = 1

    __slots__ = ("_digest", "_members", "replica")

    def __init__(self, replica: str) -> None:
        self.replica = check_replica(replica)
        self._members: dict[str, Member] = {}
        self._digest: dict[str, list[int]] = {}

    @property
    def value(self) -> dict[str, Status]:
        """`{node_id: status}`."""
        return {node: m.status for node, m in self._members.items()}

    def get(self, node: str) -> Member | None:
        """What is known about `node`."""
        return self._members.get(node)

    def items(self) -> Iterator[tuple[str, Member]]:
        """Every (node id, Member)."""
        return iter(self._members.items())

    def __contains__(self, node: object) -> bool:
        return node in self._members

    def __len__(self) -> int:
        return len(self._members)

    def alive(
        self,
        node: str,
        incarnation: int,
        address: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> MemberTable:
        """Record that `node` is alive at `incarnation`; return the delta (empty if not news)."""
        member = _checked(Member(incarnation, "alive", address, dict(metadata or {})))
        return self._claim(node, member)

    def suspect(self, node: str, incarnation: int) -> MemberTable:
        """Record that `node` is suspected at `incarnation`."""
        return self._claim_status(node, incarnation, "suspect")

    def dead(self, node: str, incarnation: int) -> MemberTable:
        """Record that `node` is confirmed dead at `incarnation`."""
        return self._claim_status(node, incarnation, "dead")

    def left(self, node: str, incarnation: int) -> MemberTable:
        """Record that `node` left gracefully at `incarnation` (a tombstone)."""
        return self._claim_status(node, incarnation, "left")

    def _claim_status(self, node: str, incarnation: int, status: Status) -> MemberTable:
        known = self._members.get(node)
        address, metadata = (known.address, known.metadata) if known else ("", {})
        return self._claim(node, Member(_incarnation(incarnation), status, address, metadata))

    def claim(self, node: str, member: Member) -> MemberTable:
        """Record `member` as news about `node` if it beats what is known; return the delta."""
        return self._claim(node, _checked(member))

    def _claim(self, node: str, member: Member) -> MemberTable:
        check_replica(node)
        delta = MemberTable(self.replica)
        current = self._members.get(node)
        if current is None or member.beats(current):
            self._put(node, member)
            delta._put(node, member)
        return delta

    def _put(self, node: str, member: Member) -> None:
        previous = self._members.get(node)
        self._members[node] = member
        if (
            previous is not None
            and previous.address == member.address
            and previous.metadata == member.metadata
        ):  # the common case, a status change: the details checksum stands
            crc = self._digest[node][2]
            self._digest[node] = [member.incarnation, STATUS_RANK[member.status], crc]
        else:
            self._digest[node] = _digest_entry(member)

    def forget(self, node: str) -> bool:
        """Drop `node` locally (garbage collection of a long-gone member); not replicated."""
        self._digest.pop(node, None)
        return self._members.pop(node, None) is not None

    def merge(self, other: MemberTable) -> None:
        """Keep, per node, the news with the highest precedence."""
        mine = self._members
        for node, member in other._members.items():
            current = mine.get(node)
            if current is None or member.beats(current):
                self._put(node, member)

    def copy(self) -> MemberTable:
        """An independent replica with the same state."""
        out = MemberTable(self.replica)
        out._members = dict(self._members)
        out._digest = dict(self._digest)
        return out

    def digest(self) -> dict[str, list[int]]:
        """`{node: [incarnation, status rank, details crc]}` (kept up to date as news arrives)."""
        return {node: list(entry) for node, entry in self._digest.items()}

    def delta_since(self, digest: Any) -> MemberTable:
        """The members whose news is ahead of, or different from, `digest`."""
        theirs = expect_dict(digest, "members digest")
        delta = MemberTable(self.replica)
        for node, mine in self._digest.items():
            known = theirs.get(node)
            if known is not None:
                if mine == known:  # the common case, compared in C
                    continue
                if (
                    type(known) is not list
                    or len(known) != 3
                    or not all(type(f) is int for f in known)
                ):
                    raise DecodeError("members digest entry: expected [incarnation, rank, crc]")
                held = (mine[0], mine[1])
                if held < (known[0], known[1]) or (
                    held == (known[0], known[1]) and mine[2] == known[2]
                ):
                    continue
            delta._members[node] = self._members[node]
            delta._digest[node] = mine
        return delta

    def split(self, max_entries: int) -> list[MemberTable]:
        """This delta as pieces of at most `max_entries` members each."""
        items = list(self._members.items())
        pieces = []
        for start in range(0, len(items), max_entries):
            piece = MemberTable(self.replica)
            piece._members = dict(items[start : start + max_entries])
            piece._digest = {node: self._digest[node] for node in piece._members}
            pieces.append(piece)
        return pieces or [self.copy()]

    def fingerprint(self) -> bytes:
        """A hash of the state (the digest determines it): sorted entries, hashed in C."""
        packed = msgpack.packb(sorted(self._digest.items()))
        return hashlib.blake2b(packed, digest_size=8).digest()

    def to_wire(self) -> WireValue:
        """`["members", 1, replica, [node, incarnation, status, address, metadata, ...]]`."""
        flat: list[Any] = []
        for node, m in self._members.items():
            flat.extend((node, m.incarnation, m.status, m.address, dict(m.metadata)))
        return [self.TAG, self.VERSION, self.replica, flat]

    @classmethod
    @decoding("members")
    def from_wire(cls, obj: WireValue) -> MemberTable:
        """Decode `to_wire` output; DecodeError on anything else."""
        _, _, replica, flat = expect_header(obj, cls.TAG, cls.VERSION, 4)
        out = cls(expect_str(replica, "members replica"))
        items = expect_list(flat, "members entries")
        if len(items) % 5:
            raise DecodeError("members entries: expected groups of 5 fields")
        for i in range(0, len(items), 5):
            node, incarnation, status, address, metadata = items[i : i + 5]
            node = expect_str(node, "member id")
            if not node or node in out._members:
                raise DecodeError(f"members: empty or repeated node id {node!r}")
            if status not in STATUS_RANK:
                raise DecodeError(f"members: unknown status {status!r}")
            meta = value_from_wire(expect_dict(metadata, "member metadata"))
            if not all(type(k) is str for k in meta):
                raise DecodeError("members: metadata keys must be str")
            out._put(
                node,
                Member(
                    expect_int(incarnation, "incarnation", 0, INT64_MAX),
                    status,
                    expect_str(address, "member address"),
                    meta,
                ),
            )
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MemberTable) and self._members == other._members

    def __repr__(self) -> str:
        return f"MemberTable({self.value!r})"


def _checked(member: Member) -> Member:
    """A member with valid fields and its metadata normalized; TypeError/ValueError otherwise."""
    if member.status not in STATUS_RANK:
        raise ValueError(f"unknown member status {member.status!r}")
    if type(member.address) is not str:
        raise TypeError(f"address must be a str, got {type(member.address).__name__}")
    check_text(member.address)
    if not isinstance(member.metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(member.metadata).__name__}")
    meta = normalize_value(dict(member.metadata))
    if not all(type(k) is str for k in meta):
        raise TypeError("member metadata keys must be str")
    return Member(_incarnation(member.incarnation), member.status, member.address, meta)


def _digest_entry(member: Member) -> list[int]:
    return [member.incarnation, STATUS_RANK[member.status], member.details_crc()]


def _incarnation(incarnation: int) -> int:
    if type(incarnation) is not int:
        raise TypeError(f"incarnation must be an int, got {type(incarnation).__name__}")
    if not 0 <= incarnation <= INT64_MAX:
        raise ValueError(f"incarnation {incarnation} is outside [0, 2**63)")
    return incarnation
