"""Discovery strategies: where candidate peers come from."""

from transport.discovery.base import Announcement, Candidate, Discovery, Found, parse_address
from transport.discovery.consul import ConsulDiscovery, ConsulError
from transport.discovery.dns import DnsDiscovery, DnsLookupError
from transport.discovery.kubernetes import KubernetesDiscovery
from transport.discovery.mdns import MdnsDiscovery
from transport.discovery.static import StaticDiscovery

__all__ = [
    "Announcement",
    "Candidate",
    "ConsulDiscovery",
    "ConsulError",
    "Discovery",
    "DnsDiscovery",
    "DnsLookupError",
    "Found",
    "KubernetesDiscovery",
    "MdnsDiscovery",
    "StaticDiscovery",
    "parse_address",
]
