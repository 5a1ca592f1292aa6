"""A deterministic simulator that drives the real protocol engine on virtual time."""

from simulations.cluster import SimCluster, SimNode, TimelinePoint, WriteRecord
from simulations.network import Dist, Link

__all__ = ["Dist", "Link", "SimCluster", "SimNode", "TimelinePoint", "WriteRecord"]
