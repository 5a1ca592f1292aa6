"""Discovery strategies: where candidate peers come from."""

from transport.discovery.base import Announcement, Candidate, Discovery, Found, parse_address
from transport.discovery.mdns import MdnsDiscovery
from transport.discovery.static import StaticDiscovery

__all__ = [
    "Announcement",
    "Candidate",
    "Discovery",
    "Found",
    "MdnsDiscovery",
    "StaticDiscovery",
    "parse_address",
]
