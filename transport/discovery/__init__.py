"""Discovery strategies: where candidate peers come from."""

from transport.discovery.base import Announcement, Candidate, Discovery, Found, parse_address
from transport.discovery.static import StaticDiscovery

__all__ = [
    "Announcement",
    "Candidate",
    "Discovery",
    "Found",
    "StaticDiscovery",
    "parse_address",
]
