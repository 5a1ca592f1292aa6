"""mDNS discovery: announce this node and browse for peers of its cluster with zeroconf."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import ipaddress
import logging
import re
import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import ifaddr
from zeroconf import (
    DNSQuestionType,
    InterfaceChoice,
    IPVersion,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from transport.discovery.base import Announcement, Candidate, Found, parse_address

log = logging.getLogger(__name__)

SERVICE_TYPE = "_foundation-p2p._tcp.local."
TXT_KEYS = ("cluster", "node", "proto")
_MAX_LABEL = 63
_MAX_TXT_ITEM = 255
_SERVICE_TYPE_RE = re.compile(r"_[A-Za-z0-9-]{1,15}\._(tcp|udp)\.local\.")


def instance_label(node_id: str) -> str:
    """A DNS label (letters, digits, hyphens; at most 63 bytes) standing for `node_id`.

    An id that is not already a valid lower-case label gets a hash suffix, so two ids that
    sanitize to the same text still get distinct labels.
    """
    cleaned = re.sub(r"[^a-z0-9-]+", "-", node_id.lower()).strip("-")
    if cleaned and cleaned == node_id and len(cleaned) <= _MAX_LABEL:
        return cleaned
    digest = hashlib.sha256(node_id.encode()).hexdigest()[:8]
    prefix = cleaned[: _MAX_LABEL - len(digest) - 1].rstrip("-") or "node"
    return f"{prefix}-{digest}"


class _Malformed(Exception):
    """A browsed service whose records do not describe a usable peer."""


@dataclass(slots=True)
class _Peer:
    """A resolved peer of our cluster: its node id and its dialable addresses."""

    node_id: str
    addresses: list[str]
    next: int = 0

    def candidate(self) -> Candidate:
        """The next address to offer, rotating so a multi-homed peer is tried on each."""
        address = self.addresses[self.next % len(self.addresses)]
        self.next += 1
        return Candidate(address, self.node_id)


def _parse_peer(info: ServiceInfo, ip_version: IPVersion) -> tuple[str, int, _Peer]:
    """(cluster, protocol version, peer) from a resolved service; _Malformed if unusable."""
    props = info.properties
    missing = [key for key in TXT_KEYS if key.encode() not in props]
    if missing:
        raise _Malformed(f"TXT lacks {', '.join(missing)}")
    cluster, node_id, proto = (props[key.encode()] for key in TXT_KEYS)
    if cluster is None or node_id is None or proto is None:
        raise _Malformed("TXT key without a value")
    try:
        cluster_s, node_s, proto_s = cluster.decode(), node_id.decode(), proto.decode()
    except UnicodeDecodeError:
        raise _Malformed("TXT value is not UTF-8") from None
    if not node_s:
        raise _Malformed("empty node id")
    if not proto_s.isdigit():
        raise _Malformed(f"protocol version {proto_s!r} is not an integer")
    port = info.port
    if port is None or not 0 < port < 65536:
        raise _Malformed(f"bad port {port!r}")
    hosts = info.parsed_scoped_addresses(ip_version)
    if not hosts:
        raise _Malformed("no address")
    addresses = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host in hosts]
    return cluster_s, int(proto_s), _Peer(node_s, addresses)


def _versions(ip_version: IPVersion) -> set[int]:
    return {IPVersion.V4Only: {4}, IPVersion.V6Only: {6}, IPVersion.All: {4, 6}}[ip_version]


class MdnsDiscovery:
    """Announces this node over mDNS and offers every peer of its cluster found by browsing.

    Known peers are offered again every `reoffer_interval` seconds, so a peer whose connection
    dropped (a reboot, a healed partition) is dialed again; the node skips connected ones.
    """

    name = "mdns"

    def __init__(
        self,
        interfaces: list[str] | None = None,
        service_type: str = SERVICE_TYPE,
        ip_version: IPVersion = IPVersion.V4Only,
        reoffer_interval: float = 5.0,
        resolve_timeout: float = 3.0,
    ) -> None:
        if not _SERVICE_TYPE_RE.fullmatch(service_type):
            raise ValueError(
                f"bad mDNS service type {service_type!r}: expected '_name._tcp.local.' "
                "(or ._udp) with a name of 1-15 letters, digits or hyphens"
            )
        if reoffer_interval <= 0 or resolve_timeout <= 0:
            raise ValueError("reoffer_interval and resolve_timeout must be > 0")
        self.interfaces = list(interfaces) if interfaces is not None else None
        self.service_type = service_type
        self.ip_version = ip_version
        self.reoffer_interval = reoffer_interval
        self.resolve_timeout = resolve_timeout
        self.counters: collections.Counter[str] = collections.Counter()
        self._session: _Session | None = None
        self._closed = False

    async def run(self, me: Announcement, found: Found) -> None:
        """Announce `me`, browse, and offer peers of `me.cluster` until cancelled or closed."""
        if self._closed:
            raise RuntimeError("MdnsDiscovery is closed")
        if self._session is not None:
            raise RuntimeError("MdnsDiscovery is already running")
        parse_address(me.address)
        for key, value in _txt(me).items():
            if len(key) + 1 + len(value.encode()) > _MAX_TXT_ITEM:
                raise ValueError(f"{key}={value!r} is too long for an mDNS TXT record")
        interfaces = self.interfaces if self.interfaces is not None else InterfaceChoice.All
        aiozc = AsyncZeroconf(interfaces=interfaces, ip_version=self.ip_version)
        session = self._session = _Session(self, aiozc, me, found)
        try:
            session.start()
            while not session.stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(session.stopping.wait(), self.reoffer_interval)
                session.reoffer()
        finally:
            # Shielded so a second cancellation cannot leave sockets open; close() awaits it too.
            await asyncio.shield(session.close())
            if self._session is session:
                self._session = None

    async def close(self) -> None:
        """Unregister the service, stop browsing and close zeroconf; idempotent."""
        self._closed = True
        session = self._session
        if session is not None:
            await session.close()
            if self._session is session:
                self._session = None

    async def service_info(self, me: Announcement) -> AsyncServiceInfo:
        """The service record announced for `me`: its name, address, port and TXT properties."""
        host, port = parse_address(me.address)
        label = instance_label(me.node_id)
        return AsyncServiceInfo(
            self.service_type,
            f"{label}.{self.service_type}",
            port=port,
            properties=_txt(me),
            server=f"{label}.local.",
            parsed_addresses=await self._announced_addresses(host),
        )

    async def _announced_addresses(self, host: str) -> list[str]:
        versions = _versions(self.ip_version)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return await self._resolve_hostname(host, versions)
        if not ip.is_unspecified:
            return [str(ip)]
        if self.interfaces is not None:
            pinned = []
            for interface in self.interfaces:
                with contextlib.suppress(ValueError):
                    if ipaddress.ip_address(interface).version in versions:
                        pinned.append(interface)
            return pinned or ["127.0.0.1"]
        return _interface_addresses(versions)

    async def _resolve_hostname(self, host: str, versions: set[int]) -> list[str]:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, None, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            log.warning(
                "mdns: cannot resolve %r (%s); announcing the interface addresses", host, exc
            )
            return _interface_addresses(versions)
        found: list[str] = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            address = str(sockaddr[0])
            if ipaddress.ip_address(address).version in versions and address not in found:
                found.append(address)
        return found or _interface_addresses(versions)


def _txt(me: Announcement) -> dict[str, str]:
    """The TXT properties announced for a node; never anything secret."""
    return {"cluster": me.cluster, "node": me.node_id, "proto": str(me.protocol_version)}


def _interface_addresses(versions: set[int]) -> list[str]:
    """The host's addresses of the wanted IP versions, loopback only if there is nothing else."""
    addresses: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            parsed = ipaddress.ip_address(text)
            if parsed.version in versions and not parsed.is_loopback and text not in addresses:
                addresses.append(text)
    return addresses or (["127.0.0.1"] if 4 in versions else ["::1"])


@dataclass(eq=False)
class _Session:
    """One `run`: the zeroconf instance, its browser and registration, and the peers found."""

    owner: MdnsDiscovery
    aiozc: AsyncZeroconf
    me: Announcement
    found: Found
    browser: AsyncServiceBrowser | None = None
    peers: dict[str, _Peer] = field(default_factory=dict)
    resolving: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    closing: asyncio.Task[None] | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        """Browse at once; register in the background (probing takes over a second)."""
        self.browser = AsyncServiceBrowser(
            self.aiozc.zeroconf,
            self.owner.service_type,
            handlers=[self.on_change],
            question_type=DNSQuestionType.QM,
        )
        self.spawn(self.register())

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def register(self) -> None:
        info = await self.owner.service_info(self.me)
        try:
            # allow_name_change: a stale or duplicate instance of this node id must not stop
            # us from announcing; peers match on the TXT node id, not on the instance name.
            broadcast = await self.aiozc.async_register_service(info, allow_name_change=True)
            await broadcast
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("mdns: could not register %s; still browsing", info.name)
            return
        log.debug("mdns: registered %s at %s", info.name, info.parsed_addresses())

    def on_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        """Browser callback (in the event loop): resolve added/updated services, drop removed."""
        if self.closing is not None:
            return
        previous = self.resolving.pop(name, None)
        if previous is not None:
            previous.cancel()
        if state_change is ServiceStateChange.Removed:
            if self.peers.pop(name, None) is not None:
                log.debug("mdns: %s left", name)
            return
        task = self.spawn(self.resolve(name))
        self.resolving[name] = task
        task.add_done_callback(lambda done: self._resolved(name, done))

    def _resolved(self, name: str, task: asyncio.Task[None]) -> None:
        if self.resolving.get(name) is task:
            del self.resolving[name]

    async def resolve(self, name: str) -> None:
        """Resolve one service and offer it if it is a peer of our cluster and version."""
        owner = self.owner
        info = AsyncServiceInfo(owner.service_type, name)
        timeout_ms = owner.resolve_timeout * 1000
        try:
            resolved = await info.async_request(self.aiozc.zeroconf, timeout_ms, DNSQuestionType.QM)
        except Exception:
            owner.counters["errors"] += 1
            log.exception("mdns: resolving %s failed", name)
            return
        if not resolved:
            owner.counters["unresolved"] += 1
            log.debug("mdns: %s did not resolve within %.1fs", name, owner.resolve_timeout)
            return
        # Re-added below only if its (possibly updated) records still describe a peer of ours.
        self.peers.pop(name, None)
        try:
            cluster, proto, peer = _parse_peer(info, owner.ip_version)
        except _Malformed as exc:
            owner.counters["malformed"] += 1
            log.debug("mdns: ignoring %s: %s", name, exc)
            return
        me = self.me
        if peer.node_id == me.node_id:
            owner.counters["own"] += 1
            return
        if cluster != me.cluster:
            owner.counters["other_cluster"] += 1
            log.debug(
                "mdns: ignoring %s: cluster %r, ours is %r", peer.node_id, cluster, me.cluster
            )
            return
        if proto != me.protocol_version:
            owner.counters["other_protocol"] += 1
            log.info(
                "mdns: ignoring %s: protocol version %d, ours is %d",
                peer.node_id,
                proto,
                me.protocol_version,
            )
            return
        self.peers[name] = peer
        owner.counters["found"] += 1
        self.offer(peer)

    def offer(self, peer: _Peer) -> None:
        try:
            self.found(peer.candidate())
        except Exception:
            log.exception("mdns: the found callback failed for %s", peer.node_id)

    def reoffer(self) -> None:
        """Offer every known peer again (unless closing)."""
        if self.closing is not None:
            return
        for peer in list(self.peers.values()):
            self.offer(peer)

    def close(self) -> asyncio.Task[None]:
        """Tear down once; every caller awaits the same task."""
        self.stopping.set()
        if self.closing is None:
            self.closing = asyncio.get_running_loop().create_task(self._teardown())
        return self.closing

    async def _teardown(self) -> None:
        self.peers.clear()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.browser is not None:
            await self.browser.async_cancel()
        # async_close sends the goodbye packets for our registration, then closes the sockets.
        await self.aiozc.async_close()
