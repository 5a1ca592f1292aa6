"""The SWIM member table as a lattice: per node, the news with the highest precedence wins.

Precedence: a higher incarnation wins; at equal incarnation left > dead > suspect > alive.
Two claims equal on both (only a misbehaving node makes them) are ordered by their encoded
address and metadata, so every replica still picks the same one.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator, Mapping
from itertools import repeat
from types import MappingProxyType
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
        if self.metadata:
            return zlib.crc32(self._details())
        # the common case (no metadata) is asked for once per member per table: remember it
        crc = _ADDRESS_CRC.get(self.address)
        if crc is None:
            if len(_ADDRESS_CRC) >= _ADDRESS_CRC_LIMIT:
                _ADDRESS_CRC.clear()
            crc = _ADDRESS_CRC[self.address] = zlib.crc32(self._details())
        return crc

    def beats(self, other: Member) -> bool:
        """Whether this news supersedes `other` (cheap unless both agree on the first two)."""
        if self.incarnation != other.incarnation:
            return self.incarnation > other.incarnation
        mine, theirs = STATUS_RANK[self.status], STATUS_RANK[other.status]
        if mine != theirs:
            return mine > theirs
        return self != other and self._details() > other._details()


DigestEntry = tuple[int, int, int]
"""(incarnation, status rank, details crc) of one member."""
_ADDRESS_CRC: dict[str, int] = {}
_ADDRESS_CRC_LIMIT = 1 << 16
_HASH_MASK = (1 << 64) - 1


class MemberTable:
    """Node id -> Member, merged by SWIM precedence.

    The digest (one entry per member) and the fingerprint (a sum of per-entry hashes) are kept
    up to date as news arrives, so anti-entropy between large tables costs no sort or rehash.
    A table decoded from the wire builds them only if asked (most deltas are only merged).
    """

    TAG = "members"
    VERSION = 1

    __slots__ = ("_digest", "_dirty", "_hashes", "_members", "_sum", "replica")

    def __init__(self, replica: str) -> None:
        self.replica = check_replica(replica)
        self._members: dict[str, Member] = {}
        self._digest: dict[str, DigestEntry] | None = {}
        # the fingerprint is the sum of the entries' hashes; entries changed since it was last
        # asked for are rehashed only when it is asked for again
        self._hashes: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._sum = 0

    @property
    def value(self) -> dict[str, Status]:
        """`{node_id: status}`."""
        return {node: m.status for node, m in self._members.items()}

    @property
    def members(self) -> Mapping[str, Member]:
        """`{node_id: Member}`, a read-only live view (for loops that look up many nodes)."""
        return MappingProxyType(self._members)

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
        delta._digest = None
        current = self._members.get(node)
        if current is None or member.beats(current):
            self._put(node, member)
            delta._put(node, member)
        return delta

    def restore_alive(self, peers: Mapping[str, str]) -> list[str]:
        """Record each node of `peers` (node -> address) not yet known as alive at incarnation
        0 with no metadata; return the nodes added, in order (a persisted peer list, in bulk)."""
        members, digest, dirty = self._members, self._digest, self._dirty
        added = []
        for node, address in peers.items():
            if node in members:
                continue
            check_replica(node)
            if type(address) is not str:
                raise TypeError(f"address must be a str, got {type(address).__name__}")
            member = Member(0, "alive", check_text(address), {})
            members[node] = member
            if digest is not None:
                digest[node] = _digest_entry(member)
                dirty.add(node)
            added.append(node)
        return added

    def advance(self, node: str, incarnation: int, status: Status) -> Member | None:
        """Record news of a new incarnation or status for a known node, keeping its address and
        metadata; return the member as now held, or None if it was not news (or is unknown).

        The cheap path for the engine's status changes: nothing new to validate."""
        current = self._members.get(node)
        rank = STATUS_RANK.get(status)
        if current is None or rank is None:
            return None
        if type(incarnation) is not int or not 0 <= incarnation <= INT64_MAX:
            _incarnation(incarnation)  # raises, naming the problem
        if incarnation < current.incarnation or (
            incarnation == current.incarnation and rank <= STATUS_RANK[current.status]
        ):
            return None  # same address and metadata: only a higher precedence is news
        member = Member(incarnation, status, current.address, current.metadata)
        self._members[node] = member
        digest = self._digest
        if digest is not None:
            old = digest.get(node)
            digest[node] = (incarnation, rank, old[2]) if old else _digest_entry(member)
            self._dirty.add(node)
        return member

    def _put(self, node: str, member: Member) -> None:
        previous = self._members.get(node)
        self._members[node] = member
        digest = self._digest
        if digest is None:
            return
        old = digest.get(node)
        if (
            old is not None
            and previous is not None
            and previous.address == member.address
            and previous.metadata == member.metadata
        ):  # the common case, a status change: the details checksum stands
            entry = (member.incarnation, STATUS_RANK[member.status], old[2])
        else:
            entry = _digest_entry(member)
        digest[node] = entry
        self._dirty.add(node)

    def _entries(self) -> dict[str, DigestEntry]:
        digest = self._digest
        if digest is None:  # decoded from the wire: build on first use
            digest = self._digest = {n: _digest_entry(m) for n, m in self._members.items()}
            self._dirty.update(digest)
        return digest

    def forget(self, node: str) -> bool:
        """Drop `node` locally (garbage collection of a long-gone member); not replicated."""
        if self._entries().pop(node, None) is not None:
            self._dirty.add(node)
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
        out._digest = dict(self._entries())
        out._hashes = dict(self._hashes)
        out._dirty = set(self._dirty)
        out._sum = self._sum
        return out

    def digest(self) -> dict[str, DigestEntry]:
        """`{node: (incarnation, status rank, details crc)}` (kept up to date as news arrives)."""
        return dict(self._entries())

    def delta_since(self, digest: Any) -> MemberTable:
        """The members whose news is ahead of, or different from, `digest`."""
        theirs = expect_dict(digest, "members digest")
        delta = MemberTable(self.replica)
        entries = self._entries()
        known_of = theirs.get
        # the common case, an equal entry, skipped in one pass (a decoded digest holds lists)
        if theirs and type(next(iter(theirs.values()))) is list:
            changed = [n for n, e in entries.items() if known_of(n) != list(e)]
        else:
            changed = [n for n, e in entries.items() if known_of(n) != e]
        for node in changed:
            mine = entries[node]
            known = known_of(node)
            if known is not None:
                if type(known) not in (list, tuple) or len(known) != 3:
                    raise DecodeError("members digest entry: expected [incarnation, rank, crc]")
                incarnation, rank, crc = known
                if type(incarnation) is not int or type(rank) is not int or type(crc) is not int:
                    raise DecodeError("members digest entry: expected [incarnation, rank, crc]")
                held, news = (mine[0], mine[1]), (incarnation, rank)
                if held < news or (held == news and mine[2] == crc):
                    continue
            delta._members[node] = self._members[node]
        delta._digest = None
        return delta

    def split(self, max_entries: int) -> list[MemberTable]:
        """This delta as pieces of at most `max_entries` members each."""
        items = list(self._members.items())
        pieces = []
        for start in range(0, len(items), max_entries):
            piece = MemberTable(self.replica)
            piece._members = dict(items[start : start + max_entries])
            piece._digest = None
            pieces.append(piece)
        return pieces or [self.copy()]

    def fingerprint(self) -> bytes:
        """A hash of the state (the digest determines it): the sum of its entries' hashes."""
        digest = self._entries()
        if self._dirty:
            hashes, total = self._hashes, self._sum
            for node in self._dirty:
                total -= hashes.pop(node, 0)
                entry = digest.get(node)
                if entry is not None:
                    hashes[node] = value = _entry_hash(node, entry)
                    total += value
            self._sum = total & _HASH_MASK
            self._dirty.clear()
        return self._sum.to_bytes(8, "big")

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
        out._digest = None
        items = expect_list(flat, "members entries")
        if len(items) % 5:
            raise DecodeError("members entries: expected groups of 5 fields")
        members = out._members
        ranks = STATUS_RANK
        fast = _from_wire_plain(items)
        if fast is not None:
            out._members = fast
            return out
        fields = iter(items)
        # _digest is None: members are only stored, their digest is built if asked for
        for node, incarnation, status, address, metadata in zip(
            fields, fields, fields, fields, fields, strict=True
        ):
            if type(node) is not str or not node or node in members:
                raise DecodeError(f"members: bad, empty or repeated node id {node!r}")
            if type(incarnation) is not int or not 0 <= incarnation <= INT64_MAX:
                expect_int(incarnation, "incarnation", 0, INT64_MAX)  # raises, naming it
            if status not in ranks or type(status) is not str:
                raise DecodeError(f"members: unknown status {status!r}")
            if type(address) is not str:
                raise DecodeError(f"member address: expected a str, got {type(address).__name__}")
            if type(metadata) is dict and not metadata:
                meta: dict[str, Any] = {}  # the common case, and a fresh map per member
            else:
                meta = value_from_wire(expect_dict(metadata, "member metadata"))
                if not all(type(k) is str for k in meta):
                    raise DecodeError("members: metadata keys must be str")
            members[node] = Member(incarnation, status, address, meta)  # type: ignore[arg-type]
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MemberTable) and self._members == other._members

    def __repr__(self) -> str:
        return f"MemberTable({self.value!r})"


_STR, _INT, _DICT = {str}, {int}, {dict}
_new_member = tuple.__new__


def _from_wire_plain(items: list[Any]) -> dict[str, Member] | None:
    """Decoded members when every entry is well formed and carries no metadata (the common
    case), checked column by column in C; None to take the entry-by-entry path (which names
    what is wrong)."""
    nodes, incarnations, statuses = items[0::5], items[1::5], items[2::5]
    addresses, metadata = items[3::5], items[4::5]
    if (
        not nodes
        or set(map(type, nodes)) != _STR
        or "" in nodes
        or set(map(type, incarnations)) != _INT
        or min(incarnations) < 0
        or max(incarnations) > INT64_MAX
        or set(map(type, statuses)) != _STR
        or not STATUS_RANK.keys() >= set(statuses)
        or set(map(type, addresses)) != _STR
        or set(map(type, metadata)) != _DICT
        or any(metadata)
    ):
        return None
    members = dict(
        zip(
            nodes,
            map(
                _new_member,
                repeat(Member),
                zip(incarnations, statuses, addresses, metadata, strict=True),
            ),
            strict=True,
        )
    )
    if len(members) != len(nodes):
        return None  # a repeated node id
    return members


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


def _digest_entry(member: Member) -> DigestEntry:
    return (member.incarnation, STATUS_RANK[member.status], member.details_crc())


def _entry_hash(node: str, entry: DigestEntry) -> int:
    """A stable 64-bit hash of one digest entry (the same on every node and Python run)."""
    key = (node, entry)
    value = _ENTRY_HASHES.get(key)
    if value is None:  # a member's entries repeat (its status flips and comes back): keep them
        if len(_ENTRY_HASHES) >= _ENTRY_HASHES_LIMIT:
            _ENTRY_HASHES.clear()
        packed = msgpack.packb((node, *entry))
        value = int.from_bytes(hashlib.blake2b(packed, digest_size=8).digest(), "big")
        _ENTRY_HASHES[key] = value
    return value


_ENTRY_HASHES: dict[tuple[str, DigestEntry], int] = {}
_ENTRY_HASHES_LIMIT = 1 << 18


def _incarnation(incarnation: int) -> int:
    if type(incarnation) is not int:
        raise TypeError(f"incarnation must be an int, got {type(incarnation).__name__}")
    if not 0 <= incarnation <= INT64_MAX:
        raise ValueError(f"incarnation {incarnation} is outside [0, 2**63)")
    return incarnation
