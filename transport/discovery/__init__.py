"""Discovery strategies: where candidate peers come from."""

from importlib import import_module
from typing import TYPE_CHECKING

from transport.discovery.base import Announcement, Candidate, Discovery, Found, parse_address
from transport.discovery.static import StaticDiscovery

if TYPE_CHECKING:
    from transport.discovery.consul import ConsulDiscovery, ConsulError
    from transport.discovery.dns import DnsDiscovery, DnsLookupError
    from transport.discovery.kubernetes import KubernetesDiscovery
    from transport.discovery.mdns import MdnsDiscovery

# Strategies whose libraries are heavy (zeroconf, dnspython, aiohttp) load on first use, so a
# node started with seeds never imports them.
_LAZY = {
    "ConsulDiscovery": "consul",
    "ConsulError": "consul",
    "DnsDiscovery": "dns",
    "DnsLookupError": "dns",
    "KubernetesDiscovery": "kubernetes",
    "MdnsDiscovery": "mdns",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'transport.discovery' has no attribute {name!r}")
    return getattr(import_module(f"transport.discovery.{module}"), name)


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
