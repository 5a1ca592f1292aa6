"""Config: every protocol timing and limit, with presets whose defaults say where they come from.

Pure data: times are in seconds, sizes in bytes. The only I/O is reading a TOML file or the
process environment when asked (`Config.from_file`, `Config.from_env`). Every way in validates
the same way and raises ConfigError naming the field and what it accepts, before anything starts.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from dataclasses import replace as _replace
from pathlib import Path
from typing import Any

PROFILES = ("development", "production", "edge", "simulation")
DISCOVERY_CHOICES = ("auto", "mdns", "static", "dns", "kubernetes", "consul", "none")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
ENV_PREFIX = "FOUNDATION_"
# FOUNDATION_* variables that are not Config fields: read by environment.py for Kubernetes.
ENV_NOT_FIELDS = (
    "FOUNDATION_PROFILE",
    "FOUNDATION_K8S_SERVICE",
    "FOUNDATION_K8S_NAMESPACE",
    "FOUNDATION_K8S_DOMAIN",
)
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type, or out of range.

    `field` names the offending setting and `accepted` says what it takes (both may be None
    for an error that is not about one field).
    """

    def __init__(self, message: str, field: str | None = None, accepted: str | None = None):
        super().__init__(message)
        self.field = field
        self.accepted = accepted


@dataclass(frozen=True, slots=True)
class Config:
    """Timings and limits of one node. Use a preset and `.replace(...)` to adjust."""

    profile: str = "production"
    """The preset these values started from: development, production, edge or simulation."""

    # --- failure detection (SWIM + Lifeguard) ------------------------------------------
    probe_interval: float = 0.5
    """Seconds between probes of one member; one protocol period. Half memberlist's LAN 1 s:
    detection scales with it (suspicion lasts mult * log10(N) periods), a LAN round trip is
    well under 1 ms, and probing costs each node two small frames a second each way."""
    probe_timeout: float = 0.25
    """Wait for a direct ack before asking others: half the period as in memberlist (500 of
    1000 ms), still > 100x a LAN round trip; a late ack inside the period still counts."""
    indirect_checks: int = 3
    """k: members asked to probe on our behalf when the direct probe fails (SWIM paper: 3)."""
    suspicion_mult: int = 4
    """Suspicion lasts at least mult * max(1, log10(N)) * probe_interval (memberlist: 4)."""
    suspicion_max_timeout_mult: int = 6
    """...and starts at this multiple of that minimum, shrinking as confirmations arrive."""
    awareness_max_multiplier: int = 8
    """Lifeguard local health: probe interval and timeout stretch up to this factor."""
    retransmit_mult: int = 4
    """Each rumour is piggybacked mult * ceil(log10(N + 1)) times (memberlist: 4)."""
    gossip_interval: float = 0.2
    """Seconds between rumour-only gossip to `gossip_nodes` random members (memberlist: 200 ms)."""
    gossip_nodes: int = 3
    """Members per gossip round (memberlist: 3)."""
    max_rumours_per_message: int = 16
    """Rumours piggybacked on one message."""

    # --- replication ----------------------------------------------------------------
    push_delay: float = 0.0
    """Seconds local deltas wait before the eager push. 0 = the next event-loop turn: writes
    made in one turn still share a push, and a lone write is visible on a peer in ~1 ms."""
    fanout: int = 3
    """Peers an eager push goes to; every peer when the cluster has <= fanout_all_below."""
    fanout_all_below: int = 8
    """Small clusters push to everyone: one hop to full replication."""
    push_hops: int = 0
    """Max relays of a pushed batch; 0 = automatic, ceil(log2(N)) + 2 (epidemic reach)."""
    anti_entropy_interval: float = 1.0
    """Seconds between push-pull digest exchanges with one random peer."""
    anti_entropy_budget_bytes: int = 512 * 1024
    """Delta bytes one anti-entropy reply may carry; the rest follows in later rounds."""
    chunk_entries: int = 2000
    """Entries per delta chunk, so a 100k-key replica never makes one huge message."""

    # --- membership lifecycle ---------------------------------------------------------
    reconnect_interval: float = 2.0
    """First retry of a dead member; doubles up to reconnect_max_interval."""
    reconnect_max_interval: float = 60.0
    """Longest wait between retries of a dead member."""
    reconnect_window: float = 6 * 3600.0
    """How long dead members are retried before being forgotten (Serf reconnect_timeout: 24 h)."""
    tombstone_ttl: float = 3600.0
    """How long a left member's tombstone is kept."""
    max_incarnation_jump: int = 1 << 20
    """A rumour raising a known incarnation by more than this is refused as absurd."""
    max_clock_drift: float = 60.0
    """Messages stamped further than this ahead of our clock are refused."""

    # --- limits -----------------------------------------------------------------------
    max_frame_bytes: int = 16 * 1024 * 1024
    """Largest frame accepted; checked from the length prefix."""
    max_value_bytes: int = 1024 * 1024
    """Largest single value accepted by SharedState."""

    # --- the node around the engine: discovery, security, storage, logs -----------------
    # Read by Node, the CLI and `foundation-p2p check`; the engine ignores them.
    listen: str = "127.0.0.1:0"
    """Gossip address host:port; loopback unless asked, so nothing is exposed by accident."""
    discovery: str = "auto"
    """How peers are found; auto picks by environment (see foundation_p2p/environment.py)."""
    seeds: tuple[str, ...] = ()
    """host:port of peers offered at start and every discovery_interval (static discovery)."""
    discovery_interval: float = 5.0
    """Seconds between seed re-offers and DNS/Consul polls: a rebooted peer is found within it."""
    dns_name: str = ""
    """Name the dns strategy resolves: SRV _foundation-p2p._tcp.<name>, then A/AAAA."""
    dns_nameservers: tuple[str, ...] = ()
    """Resolvers for dns/kubernetes discovery ("ip" or "ip:port"); empty = the system's."""
    consul_address: str = ""
    """Consul agent host:port; empty = CONSUL_HTTP_ADDR, else the local agent 127.0.0.1:8500."""
    require_key: bool = True
    """Refuse to start without a cluster key: gossip on a shared network must be sealed."""
    key_file: str = ""
    """File holding the base64 cluster key; `check` wants it readable by its owner only."""
    persistence: bool = True
    """Keep replicas in data_dir so a restart loses nothing; `check` warns if data_dir is unset."""
    data_dir: str = ""
    """Directory for persisted replicas; empty = memory only."""
    log_level: str = "INFO"
    """Level the command line logs at (the library itself never configures logging)."""
    failure_detection_goal: float = 60.0
    """Seconds within which a crashed member must be declared dead, even with no peer confirming
    the suspicion (probe interval + probe timeout + the longest suspicion); `check` holds the
    timers to it."""

    # --- persistence (a node with a data_dir) --------------------------------------------
    snapshot_interval: float = 60.0
    """Seconds between snapshots of changed replicas; each drops the log rows it covers."""
    snapshot_log_rows: int = 10_000
    """...or sooner, once the write log holds this many rows (bounds restart replay time)."""

    extra: dict[str, Any] = field(default_factory=dict)
    """Options for services layered on top (not interpreted by the engine)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            kind = _FIELD_KINDS[f.name]
            value = getattr(self, f.name)
            checked = _check_kind(f.name, kind, value)
            if checked is not value:
                object.__setattr__(self, f.name, checked)
        for name in _POSITIVE:
            if getattr(self, name) <= 0:
                raise _error(name, "a number > 0 (seconds)", getattr(self, name))
        if self.probe_timeout > self.probe_interval:
            raise ConfigError(
                f"probe_timeout ({self.probe_timeout}) must not exceed probe_interval "
                f"({self.probe_interval})",
                "probe_timeout",
                f"a number in (0, probe_interval={self.probe_interval}]",
            )
        for name in (
            "suspicion_mult",
            "suspicion_max_timeout_mult",
            "chunk_entries",
            "max_rumours_per_message",
        ):
            if getattr(self, name) < 1:
                raise _error(name, "an int >= 1", getattr(self, name))
        if self.profile not in PROFILES:
            raise _error("profile", _one_of(PROFILES), self.profile)
        if self.discovery not in DISCOVERY_CHOICES:
            raise _error("discovery", _one_of(DISCOVERY_CHOICES), self.discovery)
        if self.log_level not in LOG_LEVELS:
            raise _error("log_level", _one_of(LOG_LEVELS), self.log_level)
        for name in ("listen", "consul_address"):
            value = getattr(self, name)
            if value and not _is_address(value):
                raise _error(name, "host:port with port 0-65535", value)
        if self.dns_name and not _is_dns_name(self.dns_name):
            raise _error(
                "dns_name", "a DNS name (labels of 1-63 letters, digits, - or _)", self.dns_name
            )
        for index, server in enumerate(self.dns_nameservers):
            if not _is_ip(server) and not (
                _is_address(server) and _is_ip(server.rpartition(":")[0])
            ):
                raise _error(f"dns_nameservers[{index}]", "an IP address or ip:port", server)
        for index, seed in enumerate(self.seeds):
            if not _is_address(seed, port_zero=False):
                raise _error(f"seeds[{index}]", "host:port with port 1-65535", seed)

    # --- presets ----------------------------------------------------------------------

    @classmethod
    def production(cls, **overrides: Any) -> Config:
        """A LAN or data-centre cluster: memberlist's DefaultLANConfig timings."""
        # The timings are the class defaults above (memberlist LAN); the node-level defaults
        # too: key required, persistence on, INFO logs, a dead member declared within 60 s.
        return cls._preset("production", {}, overrides)

    @classmethod
    def development(cls, **overrides: Any) -> Config:
        """A laptop or test bench: fast timers (probe every 200 ms), quick convergence."""
        base = {
            "probe_interval": 0.2,  # 5x faster than LAN: failures show within ~1-2 s
            "probe_timeout": 0.1,
            "gossip_interval": 0.05,
            "anti_entropy_interval": 0.5,
            "reconnect_interval": 0.5,
            "reconnect_max_interval": 5.0,
            "discovery_interval": 1.0,  # a restarted peer on the bench is found within 1 s
            "require_key": False,  # a laptop or bench: nothing to seal against
            "persistence": False,  # state lives as long as the process; no files to clean up
            "log_level": "DEBUG",  # verbose: see every join, suspicion and refusal
            "failure_detection_goal": 10.0,  # worst case ~6 s with the timers above
        }
        return cls._preset("development", base, overrides)

    @classmethod
    def edge(cls, **overrides: Any) -> Config:
        """Small devices on slow or lossy links (cellular, mesh radio): patient failure
        detection, small messages, little memory."""
        base = {
            "probe_interval": 2.0,  # half the probe traffic of a LAN; RTTs of 100s of ms
            "probe_timeout": 1.5,  # a cellular round trip with retransmits fits
            "suspicion_mult": 6,  # longer suspicion: a lost ack is not a dead device
            "gossip_interval": 0.5,  # fewer, fuller packets on a metered link
            "gossip_nodes": 2,
            "max_rumours_per_message": 8,  # small messages survive lossy links better
            "fanout": 2,
            "fanout_all_below": 4,
            "anti_entropy_interval": 5.0,  # repair is cheap in rounds, dear in bytes
            "anti_entropy_budget_bytes": 64 * 1024,  # a reply fits a slow link's second
            "chunk_entries": 250,  # bounded memory per delta on a small device
            "reconnect_max_interval": 300.0,  # devices go dark for long; retry gently
            "reconnect_window": 72 * 3600.0,  # a weekend offline still rejoins by itself
            "max_frame_bytes": 1024 * 1024,  # refuse big frames before buffering them
            "max_value_bytes": 256 * 1024,
            "discovery_interval": 30.0,  # polls cost battery and bytes
            # worst case 2 + 1.5 + 6 * 1.2 * 2 * 6 = ~90 s for 16 members
            "failure_detection_goal": 180.0,
        }
        return cls._preset("edge", base, overrides)

    @classmethod
    def simulation(cls, **overrides: Any) -> Config:
        """The simulator's default: the production timings, so simulated figures hold for real."""
        # No key or disk in the simulator: its network is modelled, its nodes in memory.
        return cls._preset("simulation", {"require_key": False, "persistence": False}, overrides)

    @classmethod
    def preset(cls, profile: str, **overrides: Any) -> Config:
        """The named profile (development, production, edge, simulation) with overrides."""
        if profile not in PROFILES:
            raise _error("profile", _one_of(PROFILES), profile)
        built: Config = getattr(cls, profile)(**overrides)
        return built

    @classmethod
    def from_file(cls, path: str | Path) -> Config:
        """A profile adjusted by a TOML file: `profile = "..."` plus any fields, `[extra]`."""
        try:
            with open(path, "rb") as stream:
                data = tomllib.load(stream)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        data = dict(data)
        profile = data.pop("profile", "production")
        if not isinstance(profile, str):
            raise _error("profile", _one_of(PROFILES), profile)
        for key, value in data.items():
            if isinstance(value, dict) and key != "extra":
                raise ConfigError(
                    f"{path}: table [{key}] is not a config section; settings are top-level "
                    "keys (only [extra] is a table)",
                    key,
                    "top-level keys: " + ", ".join(_FIELD_NAMES),
                )
        return cls.preset(profile, **data)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """A profile adjusted by FOUNDATION_<FIELD> variables (FOUNDATION_SEEDS=a:1,b:2).

        The profile is FOUNDATION_PROFILE, else production when FOUNDATION_KEY_FILE is set and
        development otherwise (as Node chooses). An unknown FOUNDATION_ variable is an error:
        a misspelt setting must not be silently ignored.
        """
        env = os.environ if environ is None else environ
        overrides: dict[str, Any] = {}
        for variable, text in env.items():
            if not variable.startswith(ENV_PREFIX) or variable in ENV_NOT_FIELDS:
                continue
            name = variable[len(ENV_PREFIX) :].lower()
            if name not in _FIELD_KINDS or name in ("profile", "extra"):
                raise _unknown(name, variable)
            overrides[name] = _parse_text(name, variable, _FIELD_KINDS[name], text)
        profile = env.get("FOUNDATION_PROFILE") or (
            "production" if overrides.get("key_file") else "development"
        )
        return cls.preset(profile, **overrides)

    @classmethod
    def _preset(cls, profile: str, base: Mapping[str, Any], overrides: Mapping[str, Any]) -> Config:
        unknown = [name for name in overrides if name not in _FIELD_KINDS or name == "profile"]
        if unknown:
            raise _unknown(unknown[0])
        return cls(profile=profile, **{**base, **overrides})

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed (validated)."""
        unknown = sorted(set(changes) - set(_FIELD_KINDS))
        if unknown:
            raise _unknown(unknown[0])
        return _replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain dict."""
        return asdict(self)

    # --- derived timings (the formulas beside the defaults) ---------------------------

    def suspicion_timeouts(self, members: int) -> tuple[float, float]:
        """(min, max) suspicion timeout for a cluster of `members` nodes."""
        minimum = self.suspicion_mult * max(1.0, math.log10(max(1, members))) * self.probe_interval
        return minimum, minimum * self.suspicion_max_timeout_mult

    def members_sync_every(self, members: int) -> int:
        """Anti-entropy rounds per member-table exchange in a cluster of `members` nodes.

        1 up to 32 members, then one more per doubling (memberlist's pushPullScale): the
        exchange costs O(N) per node, so O(N^2) across the cluster, while gossip and probes
        carry membership news by themselves; joins and reconnects always exchange the table.
        """
        if members <= 32:
            return 1
        return math.ceil(math.log2(members) - 5) + 1

    def retransmit_limit(self, members: int) -> int:
        """How many times each rumour is sent in a cluster of `members` nodes."""
        return self.retransmit_mult * max(1, math.ceil(math.log10(members + 1)))

    def push_hop_limit(self, members: int) -> int:
        """How many times a pushed batch may be relayed."""
        if self.push_hops:
            return self.push_hops
        return math.ceil(math.log2(max(2, members))) + 2

    def detection_times(self, members: int) -> tuple[float, float]:
        """(typical, worst) seconds from a crash to "dead" in a cluster of `members` nodes.

        Typical: probed within a period, the probe times out, and confirmations from other
        members shrink the suspicion to its minimum. Worst: no confirmation arrives, so the
        suspicion runs its full maximum.
        """
        minimum, maximum = self.suspicion_timeouts(members)
        reached = self.probe_interval + self.probe_timeout
        return reached + minimum, reached + maximum


_FIELD_NAMES = tuple(f.name for f in fields(Config))
_FIELD_KINDS: dict[str, Any] = {
    name: hint for name, hint in typing.get_type_hints(Config).items() if name in _FIELD_NAMES
}
_POSITIVE = (
    "probe_interval",
    "probe_timeout",
    "gossip_interval",
    "anti_entropy_interval",
    "discovery_interval",
    "failure_detection_goal",
)


def _one_of(choices: tuple[str, ...]) -> str:
    return "one of " + ", ".join(repr(choice) for choice in choices)


def _error(name: str, accepted: str, value: object) -> ConfigError:
    return ConfigError(f"{name}: expected {accepted}, got {value!r}", name, accepted)


def _unknown(name: str, variable: str | None = None) -> ConfigError:
    known = [n for n in _FIELD_NAMES if n not in ("profile", "extra")]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = f"environment variable {variable}" if variable else f"config field {name!r}"
    accepted = ", ".join(known)
    return ConfigError(f"unknown {where}{hint}; accepted: {accepted}", name, accepted)


def _check_kind(name: str, kind: Any, value: Any) -> Any:
    """`value` if it is of `kind` (a list becomes a tuple, an int a float); else ConfigError."""
    if kind is float:
        if type(value) is bool or not isinstance(value, int | float):
            raise _error(name, "a number", value)
        if not math.isfinite(value) or value < 0:
            raise _error(name, "a finite number >= 0", value)
        return float(value) if type(value) is int else value
    if kind is int:
        if type(value) is not int:
            raise _error(name, "an int", value)
        if value < 0:
            raise _error(name, "an int >= 0", value)
        return value
    if kind is bool:
        if type(value) is not bool:
            raise _error(name, "true or false", value)
        return value
    if kind is str:
        if not isinstance(value, str):
            raise _error(name, "a string", value)
        return value
    if typing.get_origin(kind) is tuple:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise _error(name, "a list of strings", value)
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise _error(f"{name}[{index}]", "a string", item)
        return value if isinstance(value, tuple) else tuple(value)
    if not isinstance(value, dict):
        raise _error(name, "a table (dict)", value)
    return value


def _parse_text(name: str, variable: str, kind: Any, text: str) -> Any:
    """An environment variable's text as a value of the field's kind."""
    try:
        if kind is float:
            return float(text)
        if kind is int:
            return int(text)
    except ValueError:
        accepted = "a number" if kind is float else "an int"
        raise ConfigError(
            f"{variable} ({name}): expected {accepted}, got {text!r}", name, accepted
        ) from None
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        accepted = "true or false (1/0, yes/no, on/off)"
        raise ConfigError(f"{variable} ({name}): expected {accepted}, got {text!r}", name, accepted)
    if typing.get_origin(kind) is tuple:
        return tuple(item.strip() for item in text.split(",") if item.strip())
    return text


def _is_dns_name(text: str) -> bool:
    labels = text.removesuffix(".").split(".")
    return len(text) <= 253 and all(_DNS_LABEL.fullmatch(label) for label in labels)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def _is_address(text: str, port_zero: bool = True) -> bool:
    """Whether `text` is host:port (or [v6]:port) with a port in range."""
    host, sep, port = text.rpartition(":")
    if not sep or not host.strip("[]") or not port.isdigit():
        return False
    return (0 if port_zero else 1) <= int(port) < 65536
