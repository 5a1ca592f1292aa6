"""Delta-state CRDTs: pure data types that merge without coordination.

No type here reads a clock, a random source or a socket; timestamps are passed in.
"""

from crdts.base import CRDT, DecodeError, normalize_key, normalize_value
from crdts.counters import GCounter, PNCounter
from crdts.dots import Dot, DotContext
from crdts.hlc import HLC, ClockDriftError, Timestamp
from crdts.maps import LWWEntry, LWWMap, ORMap
from crdts.members import STATUSES, Member, MemberTable, Status
from crdts.registers import LWWRegister, MVRegister
from crdts.sets import AWORSet
from crdts.ydoc import EMPTY_UPDATE, YDoc

__all__ = [
    "CRDT",
    "EMPTY_UPDATE",
    "HLC",
    "STATUSES",
    "AWORSet",
    "ClockDriftError",
    "DecodeError",
    "Dot",
    "DotContext",
    "GCounter",
    "LWWEntry",
    "LWWMap",
    "LWWRegister",
    "MVRegister",
    "Member",
    "MemberTable",
    "ORMap",
    "PNCounter",
    "Status",
    "Timestamp",
    "YDoc",
    "normalize_key",
    "normalize_value",
]
