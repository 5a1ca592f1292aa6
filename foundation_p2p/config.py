"""Config: every protocol timing and limit, with presets whose defaults say where they come from.

Pure data: no I/O. Times are in seconds, sizes in bytes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from dataclasses import replace as _replace
from typing import Any


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type, or out of range."""


@dataclass(frozen=True, slots=True)
class Config:
    """Timings and limits of one node. Use a preset and `.replace(...)` to adjust."""

    profile: str = "production"

    # --- failure detection (SWIM + Lifeguard) ------------------------------------------
    probe_interval: float = 1.0
    """Seconds between probes of one member; one protocol period (memberlist LAN: 1 s)."""
    probe_timeout: float = 0.5
    """Wait for a direct ack before asking others (memberlist LAN: 500 ms, ~ 99.9th pct RTT)."""
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
    push_delay: float = 0.005
    """Local deltas are batched this long before the eager push (a few ms, per DESIGN)."""
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

    extra: dict[str, Any] = field(default_factory=dict)
    """Options for services layered on top (not interpreted by the engine)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("profile", "extra"):
                continue
            expected = int if isinstance(f.default, int) else float
            if type(value) is bool or not isinstance(value, int | float):
                raise ConfigError(f"{f.name} must be a number, got {value!r}")
            if expected is int and type(value) is not int:
                raise ConfigError(f"{f.name} must be an int, got {value!r}")
            if value < 0 or (isinstance(value, float) and not math.isfinite(value)):
                raise ConfigError(f"{f.name} must be a finite number >= 0, got {value!r}")
        for name in ("probe_interval", "probe_timeout", "gossip_interval", "anti_entropy_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.probe_timeout > self.probe_interval:
            raise ConfigError(
                f"probe_timeout ({self.probe_timeout}) must not exceed probe_interval "
                f"({self.probe_interval})"
            )
        if self.suspicion_mult < 1 or self.suspicion_max_timeout_mult < 1:
            raise ConfigError("suspicion_mult and suspicion_max_timeout_mult must be >= 1")
        if self.chunk_entries < 1 or self.max_rumours_per_message < 1:
            raise ConfigError("chunk_entries and max_rumours_per_message must be >= 1")

    # --- presets ----------------------------------------------------------------------

    @classmethod
    def production(cls, **overrides: Any) -> Config:
        """A LAN or data-centre cluster: memberlist's DefaultLANConfig timings."""
        return cls(profile="production", **overrides)

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
        }
        return cls(profile="development", **{**base, **overrides})

    @classmethod
    def simulation(cls, **overrides: Any) -> Config:
        """The simulator's default: the production timings, so simulated figures hold for real."""
        return cls(profile="simulation", **overrides)

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed (validated)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        return _replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain dict."""
        return asdict(self)

    # --- derived timings (the formulas beside the defaults) ---------------------------

    def suspicion_timeouts(self, members: int) -> tuple[float, float]:
        """(min, max) suspicion timeout for a cluster of `members` nodes."""
        minimum = self.suspicion_mult * max(1.0, math.log10(max(1, members))) * self.probe_interval
        return minimum, minimum * self.suspicion_max_timeout_mult

    def retransmit_limit(self, members: int) -> int:
        """How many times each rumour is sent in a cluster of `members` nodes."""
        return self.retransmit_mult * max(1, math.ceil(math.log10(members + 1)))

    def push_hop_limit(self, members: int) -> int:
        """How many times a pushed batch may be relayed."""
        if self.push_hops:
            return self.push_hops
        return math.ceil(math.log2(max(2, members))) + 2
