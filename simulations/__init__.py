"""A deterministic simulator that drives the real protocol engine on virtual time."""

from simulations.cluster import SimCluster, SimNode, TimelinePoint, WriteRecord
from simulations.faults import FaultEvent, FaultSchedule, fault_schedules, settle
from simulations.network import Dist, Link

__all__ = [
    "Dist",
    "FaultEvent",
    "FaultSchedule",
    "Link",
    "SimCluster",
    "SimNode",
    "TimelinePoint",
    "WriteRecord",
    "fault_schedules",
    "settle",
]
