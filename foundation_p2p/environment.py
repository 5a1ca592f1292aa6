"""What the node's surroundings are, and why we think so; the discovery that fits them; and the
production-readiness review behind `foundation-p2p check`.

Detection reads environment variables and well-known files only: no network, no side effects.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from foundation_p2p.config import DISCOVERY_CHOICES, Config, ConfigError
from transport.discovery import Discovery, StaticDiscovery, parse_address

if TYPE_CHECKING:
    from transport.discovery.consul import ConsulDiscovery

# The dns, kubernetes and consul strategies (dnspython, aiohttp) are imported where used: a
# node started with seeds or mDNS never loads them. Equal to kubernetes.SERVICE_ACCOUNT_DIR
# (tests/test_startup_imports.py checks it).
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

log = logging.getLogger("foundation_p2p.environment")

Kind = Literal["explicit", "kubernetes", "consul", "seeds", "lan"]
Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True, slots=True)
class Environment:
    """What detect_environment found: the kind of place, the discovery it implies, and why."""

    kind: Kind
    discovery: str
    reason: str
    seeds: tuple[str, ...] = ()


def detect_environment(
    environ: Mapping[str, str] | None = None, service_account_dir: Path | None = None
) -> Environment:
    """Kubernetes, then Consul, then a seed list, else a LAN (mDNS); FOUNDATION_DISCOVERY wins.

    Kubernetes: the pod's service-account files or KUBERNETES_SERVICE_HOST. Consul:
    CONSUL_HTTP_ADDR. Seeds: FOUNDATION_SEEDS (comma-separated host:port).
    """
    env = os.environ if environ is None else environ
    service_account_dir = service_account_dir or SERVICE_ACCOUNT_DIR
    explicit = env.get("FOUNDATION_DISCOVERY", "").strip()
    if explicit and explicit != "auto":
        if explicit not in DISCOVERY_CHOICES:
            raise ConfigError(
                f"FOUNDATION_DISCOVERY: expected one of {', '.join(DISCOVERY_CHOICES)}, "
                f"got {explicit!r}",
                "discovery",
                ", ".join(DISCOVERY_CHOICES),
            )
        return Environment(
            "explicit", explicit, f"FOUNDATION_DISCOVERY={explicit}", _env_seeds(env)
        )
    if _readable_file(service_account_dir / "token"):
        return Environment(
            "kubernetes",
            "kubernetes",
            f"a Kubernetes service account is mounted at {service_account_dir}",
        )
    if env.get("KUBERNETES_SERVICE_HOST"):
        return Environment(
            "kubernetes",
            "kubernetes",
            f"KUBERNETES_SERVICE_HOST={env['KUBERNETES_SERVICE_HOST']} (running in a pod)",
        )
    if env.get("FOUNDATION_K8S_SERVICE"):
        return Environment(
            "kubernetes", "kubernetes", f"FOUNDATION_K8S_SERVICE={env['FOUNDATION_K8S_SERVICE']}"
        )
    if env.get("CONSUL_HTTP_ADDR"):
        return Environment(
            "consul", "consul", f"CONSUL_HTTP_ADDR={env['CONSUL_HTTP_ADDR']} (a Consul agent)"
        )
    seeds = _env_seeds(env)
    if seeds:
        return Environment("seeds", "static", f"FOUNDATION_SEEDS lists {len(seeds)} seed(s)", seeds)
    return Environment(
        "lan",
        "mdns",
        "no Kubernetes, Consul or seed list found: assuming a LAN, peers found by mDNS",
    )


def _readable_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a directory we may not search: not a mount we can use
        return False


def _env_seeds(env: Mapping[str, str]) -> tuple[str, ...]:
    seeds = tuple(s.strip() for s in env.get("FOUNDATION_SEEDS", "").split(",") if s.strip())
    for index, seed in enumerate(seeds):
        try:
            parse_address(seed)
        except ValueError:
            raise ConfigError(
                f"FOUNDATION_SEEDS[{index}]: expected host:port with port 1-65535, got {seed!r}",
                "seeds",
                "host:port with port 1-65535",
            ) from None
    return seeds


@dataclass(frozen=True, slots=True)
class DiscoveryChoice:
    """The strategy a node will use (None: only explicit joins) and why."""

    discovery: Discovery | None
    reason: str


def choose_discovery(
    choice: str | Discovery | None,
    *,
    cluster: str,
    config: Config,
    seeds: Sequence[str] = (),
    listen: str = "",
    mdns_interfaces: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
    service_account_dir: Path | None = None,
) -> DiscoveryChoice:
    """Build the strategy for `choice` ("auto" consults the config, the seeds given, then
    detect_environment). Raises ConfigError if the choice cannot be built."""
    if choice is not None and not isinstance(choice, str):
        return DiscoveryChoice(choice, f"discovery={type(choice).__name__}(...) was given")
    service_account_dir = service_account_dir or SERVICE_ACCOUNT_DIR
    seeds = list(seeds) or list(config.seeds)
    if choice is None:
        if seeds:
            return DiscoveryChoice(_static(seeds, config), "discovery=None with seeds: static")
        return DiscoveryChoice(None, "discovery=None: only explicit joins")
    if choice == "auto" and config.discovery != "auto":
        choice, reason = config.discovery, f"the config says discovery={config.discovery!r}"
    elif choice == "auto" and seeds:
        choice, reason = "static", f"{len(seeds)} seed(s) were given"
    elif choice == "auto":
        found = detect_environment(environ, service_account_dir)
        choice, reason = found.discovery, found.reason
        seeds = list(found.seeds) or seeds
    else:
        reason = f"discovery={choice!r} was asked for"
    if choice == "none":
        return DiscoveryChoice(None, reason)
    if choice == "static":
        if not seeds:
            raise ConfigError(
                "discovery='static' needs seeds=['host:port', ...]", "seeds", "host:port list"
            )
        return DiscoveryChoice(_static(seeds, config), reason)
    if choice == "mdns":
        from transport.discovery.mdns import MdnsDiscovery  # zeroconf loads only when used

        interfaces = mdns_interfaces if mdns_interfaces is not None else _pinned(listen)
        where = "every interface" if interfaces is None else ", ".join(interfaces)
        return DiscoveryChoice(
            MdnsDiscovery(interfaces=interfaces, reoffer_interval=config.discovery_interval),
            f"{reason}; mDNS on {where}",
        )
    nameservers = list(config.dns_nameservers) or None
    if choice == "dns":
        if not config.dns_name:
            raise ConfigError(
                "discovery='dns' needs dns_name (the name to resolve)", "dns_name", "a DNS name"
            )
        from transport.discovery.dns import DnsDiscovery

        try:
            strategy: Discovery = DnsDiscovery(
                config.dns_name, interval=config.discovery_interval, nameservers=nameservers
            )
        except ValueError as exc:
            raise ConfigError(f"dns discovery: {exc}", "dns_name", "a DNS name") from None
        return DiscoveryChoice(strategy, f"{reason}; resolving {config.dns_name}")
    if choice == "kubernetes":
        from transport.discovery.kubernetes import KubernetesDiscovery

        try:
            kubernetes = KubernetesDiscovery(
                config.dns_name or cluster,
                interval=config.discovery_interval,
                nameservers=nameservers,
                environ=environ,
                service_account_dir=service_account_dir,
            )
        except ValueError as exc:
            raise ConfigError(
                f"kubernetes discovery: {exc}",
                "dns_name",
                "a headless service name (FOUNDATION_K8S_SERVICE, dns_name or the cluster name)",
            ) from None
        return DiscoveryChoice(
            kubernetes, f"{reason}; resolving headless service {kubernetes.dns_name}"
        )
    if choice == "consul":
        env = os.environ if environ is None else environ
        from transport.discovery.consul import ConsulDiscovery

        consul = ConsulDiscovery(
            config.consul_address or env.get("CONSUL_HTTP_ADDR") or None,
            interval=config.discovery_interval,
            token=env.get("CONSUL_HTTP_TOKEN"),
        )
        return DiscoveryChoice(consul, f"{reason}; Consul agent at {consul.base_url}")
    raise ConfigError(
        f"discovery: expected one of {', '.join(DISCOVERY_CHOICES)} or a Discovery object, "
        f"got {choice!r}",
        "discovery",
        ", ".join(DISCOVERY_CHOICES),
    )


def _static(seeds: Sequence[str], config: Config) -> StaticDiscovery:
    try:
        return StaticDiscovery(seeds, interval=config.discovery_interval)
    except ValueError as exc:
        raise ConfigError(f"seeds: {exc}", "seeds", "host:port with port 1-65535") from None


def _pinned(listen: str) -> list[str] | None:
    """mDNS interfaces for a listen address: its own IP, or every interface for 0.0.0.0/::.

    A node listening on one address can be dialed only there, so announcing it on other
    interfaces would be a lie; and a loopback node (the default) never multicasts on the LAN.
    """
    try:
        ip = ipaddress.ip_address(listen.rpartition(":")[0].strip("[]"))
    except ValueError:
        return None
    return None if ip.is_unspecified else [str(ip)]


# --- the production-readiness review (`foundation-p2p check`) ---------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """One result of the review: how bad, a stable code, what is wrong, and how to fix it."""

    severity: Severity
    code: str
    message: str
    fix: str


async def check_readiness(
    config: Config,
    *,
    cluster: str = "default",
    members: int = 16,
    environ: Mapping[str, str] | None = None,
    service_account_dir: Path | None = None,
    timeout: float = 2.0,
) -> list[Finding]:
    """Review `config` and the surroundings like a production-readiness review."""
    findings = _key_findings(config)
    findings += _timer_findings(config, members)
    findings += _storage_findings(config)
    findings += await _discovery_findings(config, cluster, environ, service_account_dir, timeout)
    return findings


def _key_findings(config: Config) -> list[Finding]:
    findings: list[Finding] = []
    generate = (
        "python -c 'from transport import generate_key, key_to_text; "
        "print(key_to_text(generate_key()))' > cluster.key && chmod 600 cluster.key"
    )
    host = config.listen.rpartition(":")[0].strip("[]")
    open_bind = host in ("", "0.0.0.0", "::")
    if not config.key_file:
        if config.require_key:
            findings.append(
                Finding(
                    "error",
                    "key.missing",
                    f"the {config.profile} profile requires a cluster key, but key_file is unset",
                    f"generate one ({generate}) and set key_file to its path on every node",
                )
            )
        if open_bind:
            findings.append(
                Finding(
                    "error",
                    "bind.open_without_key",
                    f"listen={config.listen} accepts gossip from any host, unauthenticated "
                    "and in clear text",
                    "set key_file (every frame is then sealed with AES-GCM), or listen on one "
                    "private address",
                )
            )
        return findings
    path = Path(config.key_file)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        from transport import load_key_file

        load_key_file(path)
    except OSError as exc:
        findings.append(
            Finding(
                "error",
                "key.unreadable",
                f"key_file {path} cannot be read: {exc.strerror or exc}",
                f"check the path and that this user can read it, or generate one ({generate})",
            )
        )
        return findings
    except ValueError as exc:  # KeyringError
        findings.append(
            Finding("error", "key.invalid", str(exc), f"generate a valid key ({generate})")
        )
        return findings
    if os.name == "posix" and mode & stat.S_IROTH:
        findings.append(
            Finding(
                "error",
                "key.world_readable",
                f"key_file {path} is readable by every user on this host (mode {mode:o})",
                f"chmod 600 {path}",
            )
        )
    elif os.name == "posix" and mode & 0o070:
        findings.append(
            Finding(
                "warning",
                "key.group_readable",
                f"key_file {path} is accessible to its group (mode {mode:o})",
                f"chmod 600 {path}, unless that group is meant to hold the key",
            )
        )
    return findings


def _timer_findings(config: Config, members: int) -> list[Finding]:
    typical, worst = config.detection_times(members)
    goal = config.failure_detection_goal
    shape = (
        f"probe_interval={config.probe_interval}, probe_timeout={config.probe_timeout}, "
        f"suspicion_mult={config.suspicion_mult}, "
        f"suspicion_max_timeout_mult={config.suspicion_max_timeout_mult}"
    )
    if typical > goal:
        return [
            Finding(
                "error",
                "timers.too_slow",
                f"with {members} members a crash is declared after ~{typical:.1f} s even when "
                f"peers confirm it, beyond failure_detection_goal={goal:g} s ({shape})",
                "lower probe_interval or suspicion_mult, or raise failure_detection_goal",
            )
        ]
    if worst > goal:
        return [
            Finding(
                "warning",
                "timers.slow_unconfirmed",
                f"with {members} members a crash nobody confirms is declared after "
                f"{worst:.1f} s, beyond failure_detection_goal={goal:g} s ({shape})",
                "lower suspicion_max_timeout_mult or probe_interval, or raise "
                "failure_detection_goal",
            )
        ]
    return []


def _storage_findings(config: Config) -> list[Finding]:
    if not config.data_dir:
        if config.persistence:
            return [
                Finding(
                    "warning",
                    "data_dir.unset",
                    f"the {config.profile} profile keeps replicas on disk, but data_dir is "
                    "unset: a restarted node starts empty and refills from its peers",
                    "set data_dir to a directory on persistent storage",
                )
            ]
        return []
    path = Path(config.data_dir)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is not a directory" if existing == path else f"sits under {existing}, a file"
        return [
            Finding(
                "error",
                "data_dir.not_a_directory",
                f"data_dir {path} {what}",
                "point data_dir at a directory",
            )
        ]
    problem = _write_probe(existing)
    if problem:
        what = "is not writable" if existing == path else f"cannot be created in {existing}"
        return [
            Finding(
                "error",
                "data_dir.not_writable",
                f"data_dir {path} {what} by this user ({problem})",
                f"create it on a writable volume and give this user write access "
                f"(mkdir -p {path} && chown $USER {path})",
            )
        ]
    return []


def _write_probe(directory: Path) -> str:
    """Why a directory cannot be written to ("" if it can): a real attempt, since access bits
    say nothing for root or on a read-only mount."""
    try:
        probe = tempfile.mkdtemp(prefix=".foundation-check-", dir=directory)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.rmdir(probe)
    return ""


async def _discovery_findings(
    config: Config,
    cluster: str,
    environ: Mapping[str, str] | None,
    service_account_dir: Path | None,
    timeout: float,
) -> list[Finding]:
    try:
        chosen = choose_discovery(
            "auto",
            cluster=cluster,
            config=config,
            listen=config.listen,
            environ=environ,
            service_account_dir=service_account_dir,
        )
    except ConfigError as exc:
        field = exc.field or "discovery"
        return [Finding("error", "discovery.invalid", str(exc), f"set {field}: {exc.accepted}")]
    from transport.discovery.consul import ConsulDiscovery
    from transport.discovery.dns import DnsDiscovery, DnsLookupError

    strategy = chosen.discovery
    findings = [Finding("info", "discovery.choice", chosen.reason, "")]
    if isinstance(strategy, DnsDiscovery):
        strategy.resolver.lifetime = strategy.resolver.timeout = timeout
        try:
            candidates = await strategy.resolve(_port(config.listen))
        except DnsLookupError as exc:
            findings.append(
                Finding(
                    "error",
                    "discovery.unreachable",
                    f"{strategy.name} discovery: {strategy.dns_name}: {exc}",
                    "check the name (a headless service: clusterIP: None), the resolver "
                    "(dns_nameservers) and that DNS answers from here",
                )
            )
        else:
            if not candidates:
                findings.append(
                    Finding(
                        "warning",
                        "discovery.empty",
                        f"{strategy.dns_name} resolves to no peer",
                        "check that the service selects the pods and that they are ready",
                    )
                )
    elif isinstance(strategy, ConsulDiscovery):
        findings += await _consul_findings(strategy, timeout)
    elif type(strategy).__name__ == "MdnsDiscovery":  # zeroconf loads only when chosen
        findings += _mdns_findings(config, getattr(strategy, "interfaces", None))
    elif isinstance(strategy, StaticDiscovery):
        reachable = [seed for seed in strategy.seeds if await _tcp_open(seed, timeout)]
        if not reachable:
            findings.append(
                Finding(
                    "warning",
                    "discovery.seeds_unreachable",
                    f"none of the seeds answers on TCP: {', '.join(strategy.seeds)}",
                    "fine for the first node of a new cluster; otherwise check the addresses "
                    "and firewalls",
                )
            )
    return findings


def _mdns_findings(config: Config, pinned: list[str] | None) -> list[Finding]:
    """Whether mDNS can work where it will run: the pinned address is on this host, the
    interface carries multicast, and a loopback pin is not mistaken for a LAN."""
    import ifaddr

    adapters = {
        str(ip.ip if isinstance(ip.ip, str) else ip.ip[0]): adapter.name
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
    }
    if pinned is None:  # 0.0.0.0 / ::: every interface
        multicast = [name for name in set(adapters.values()) if _multicast(name) is True]
        if not multicast:
            return [
                Finding(
                    "warning",
                    "mdns.no_multicast",
                    "no network interface here carries multicast, so mDNS finds no peer",
                    "use discovery=static (seeds), dns or consul, or enable multicast",
                )
            ]
        return [Finding("info", "mdns.interfaces", "mDNS on " + ", ".join(sorted(multicast)), "")]
    findings = []
    for ip in pinned:
        name = adapters.get(ip)
        if name is None:
            findings.append(
                Finding(
                    "error",
                    "mdns.no_interface",
                    f"listen={config.listen}: {ip} is on no interface of this host",
                    "listen on an address of this host (ip addr shows them), or 0.0.0.0",
                )
            )
        elif ipaddress.ip_address(ip).is_loopback:
            findings.append(
                Finding(
                    "warning" if config.profile == "production" else "info",
                    "mdns.loopback",
                    f"mDNS is pinned to {ip} ({name}): only nodes on this host can find it",
                    "listen on the LAN address (or 0.0.0.0) for peers on other hosts",
                )
            )
        elif _multicast(name) is False:
            findings.append(
                Finding(
                    "warning",
                    "mdns.no_multicast",
                    f"interface {name} ({ip}) does not carry multicast, so mDNS finds no peer",
                    "use discovery=static (seeds), dns or consul, or enable multicast "
                    f"(ip link set {name} multicast on)",
                )
            )
    return findings


def _multicast(interface: str) -> bool | None:
    """Whether the interface has IFF_MULTICAST (None where /sys/class/net cannot tell)."""
    try:
        flags = int(Path(f"/sys/class/net/{interface}/flags").read_text().strip(), 16)
    except (OSError, ValueError):
        return None
    return bool(flags & 0x1000)


async def _consul_findings(consul: ConsulDiscovery, timeout: float) -> list[Finding]:
    import aiohttp

    url = f"{consul.base_url}/v1/agent/self"
    problem = ""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            headers = {"X-Consul-Token": consul.token} if consul.token else None
            async with session.get(url, headers=headers) as response:
                if response.status >= 400:
                    problem = f"HTTP {response.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if not problem:
        return []
    return [
        Finding(
            "error",
            "discovery.unreachable",
            f"the Consul agent at {consul.base_url} does not answer ({problem})",
            "run a local agent, or set consul_address / CONSUL_HTTP_ADDR to one "
            "(and CONSUL_HTTP_TOKEN if ACLs are on)",
        )
    ]


async def _tcp_open(address: str, timeout: float) -> bool:
    host, port = parse_address(address)
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _port(listen: str) -> int | None:
    try:
        port = parse_address(listen)[1]
    except ValueError:
        return None
    return port or None
