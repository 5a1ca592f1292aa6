"""DNS discovery: poll SRV `_foundation-p2p._tcp.<name>` and A/AAAA of `<name>` with dnspython."""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.resolver

from transport.discovery.base import Announcement, Candidate, Found, parse_address

log = logging.getLogger(__name__)

SRV_PREFIX = "_foundation-p2p._tcp"


class DnsLookupError(Exception):
    """The name could not be resolved this round (`reason`: nxdomain, timeout, servfail)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class DnsDiscovery:
    """Offers the peers a DNS name resolves to, polled every `interval` seconds.

    SRV records `_foundation-p2p._tcp.<name>` give hosts and ports; without them, the A and
    AAAA records of `<name>` are dialed at `port` (default: this node's own port, as in a
    Kubernetes headless service where every pod listens alike). Records that change are
    followed at the next poll. On a timeout or a failing server the last answer is offered
    again (the peers are probably still there); on NXDOMAIN nothing is offered.
    """

    name = "dns"

    def __init__(
        self,
        dns_name: str,
        port: int | None = None,
        interval: float = 5.0,
        nameservers: Sequence[str] | None = None,
        timeout: float = 2.0,
        srv: bool = True,
    ) -> None:
        if not dns_name or not isinstance(dns_name, str):
            raise ValueError(f"dns discovery needs a name to resolve, got {dns_name!r}")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port must be 1-65535, got {port}")
        if interval <= 0 or timeout <= 0:
            raise ValueError("interval and timeout must be > 0")
        try:
            dns.name.from_text(f"{SRV_PREFIX}.{dns_name}")
        except dns.exception.DNSException as exc:
            raise ValueError(f"{dns_name!r} is not a valid DNS name: {exc}") from None
        self.dns_name = dns_name.rstrip(".")
        self.port = port
        self.interval = interval
        self.timeout = timeout
        self.srv = srv
        self.counters: collections.Counter[str] = collections.Counter()
        self.last: list[Candidate] = []
        # configure=False with explicit servers: no /etc/resolv.conf read (tests, sidecars).
        try:
            self.resolver = dns.asyncresolver.Resolver(configure=nameservers is None)
        except dns.resolver.NoResolverConfiguration:
            raise ValueError(
                "no system resolver is configured (/etc/resolv.conf): give nameservers"
            ) from None
        if nameservers is not None:
            self.resolver.nameservers = [nameserver(text) for text in nameservers]
        self.resolver.lifetime = timeout
        self.resolver.timeout = timeout
        self._closed = asyncio.Event()

    async def run(self, me: Announcement, found: Found) -> None:
        """Resolve and offer every `interval` seconds until cancelled or closed."""
        _host, own_port = parse_address(me.address)
        failing: str | None = None
        while not self._closed.is_set():
            try:
                self.last = [c for c in await self.resolve(own_port) if c.address != me.address]
                self.counters["polls"] += 1
                if failing is not None:
                    log.info("%s discovery: %s resolves again", self.name, self.dns_name)
                failing = None
            except DnsLookupError as exc:
                self.counters[exc.reason] += 1
                if exc.reason == "nxdomain":
                    self.last = []
                # One warning per kind of failure, not one per poll: repeats go to debug.
                level = logging.DEBUG if exc.reason == failing else logging.WARNING
                failing = exc.reason
                log.log(
                    level, "%s discovery: %s (polling every %gs)", self.name, exc, self.interval
                )
            for candidate in self.last:
                try:
                    found(candidate)
                except Exception:
                    log.exception("%s discovery: the found callback failed", self.name)
            try:
                await asyncio.wait_for(self._closed.wait(), self.interval)
            except TimeoutError:
                pass

    async def close(self) -> None:
        """Stop polling; idempotent."""
        self._closed.set()

    async def resolve(self, default_port: int | None = None) -> list[Candidate]:
        """One lookup: SRV targets and ports if published, else A/AAAA at the default port."""
        if self.srv:
            targets = await self._srv()
            if targets:
                candidates: list[Candidate] = []
                for target, port in targets:
                    for address in await self._addresses(target, missing_ok=True):
                        candidates.append(Candidate(_join(address, port)))
                return _unique(candidates)
        chosen = self.port or default_port
        if not chosen:
            raise ValueError("dns discovery without SRV records needs a port")
        addresses = await self._addresses(self.dns_name)
        return _unique([Candidate(_join(address, chosen)) for address in addresses])

    async def _srv(self) -> list[tuple[str, int]]:
        """(target, port) of the SRV records, by priority then weight; [] if none published."""
        try:
            answer = await self.resolver.resolve(
                f"{SRV_PREFIX}.{self.dns_name}", "SRV", search=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.Timeout as exc:
            raise DnsLookupError("timeout", f"SRV {SRV_PREFIX}.{self.dns_name}: {exc}") from None
        except dns.resolver.NoNameservers as exc:
            raise DnsLookupError("servfail", f"SRV {SRV_PREFIX}.{self.dns_name}: {exc}") from None
        except dns.exception.DNSException as exc:  # anything else: a bad answer, never a crash
            raise DnsLookupError("error", f"SRV {SRV_PREFIX}.{self.dns_name}: {exc}") from None
        records = sorted(answer, key=lambda r: (r.priority, -r.weight))
        # A target of "." says the service is decidedly not available there (RFC 2782).
        return [
            (r.target.to_text(omit_final_dot=True), int(r.port))
            for r in records
            if r.target != dns.name.root
        ]

    async def _addresses(self, host: str, missing_ok: bool = False) -> list[str]:
        """The A and AAAA addresses of `host` (an IP literal stands for itself)."""
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        addresses: list[str] = []
        missing = 0
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self.resolver.resolve(host, rdtype, search=False)
            except dns.resolver.NoAnswer:
                continue
            except dns.resolver.NXDOMAIN:
                missing += 1
                continue
            except dns.exception.Timeout as exc:
                raise DnsLookupError("timeout", f"{rdtype} {host}: {exc}") from None
            except dns.resolver.NoNameservers as exc:
                raise DnsLookupError("servfail", f"{rdtype} {host}: {exc}") from None
            except dns.exception.DNSException as exc:
                raise DnsLookupError("error", f"{rdtype} {host}: {exc}") from None
            addresses.extend(record.to_text() for record in answer)
        if missing == 2 and not missing_ok:
            raise DnsLookupError("nxdomain", f"{host} does not exist")
        return addresses


def nameserver(text: str) -> dns.nameserver.Nameserver:
    """A UDP/TCP nameserver from "ip" or "ip:port" ("[v6]:port"); ValueError if malformed."""
    try:
        return dns.nameserver.Do53Nameserver(str(ipaddress.ip_address(text.strip("[]"))), 53)
    except ValueError:
        pass
    host, port = parse_address(text)
    return dns.nameserver.Do53Nameserver(str(ipaddress.ip_address(host)), port)


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _unique(candidates: list[Candidate]) -> list[Candidate]:
    return list(dict.fromkeys(candidates))
