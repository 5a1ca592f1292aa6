"""The modelled network: per-link latency, loss, duplication and reordering, and partitions."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field, replace


@dataclass(frozen=True, slots=True)
class Dist:
    """A latency distribution in seconds."""

    kind: str = "uniform"
    low: float = 0.0005
    high: float = 0.002
    mean: float = 0.001

    @classmethod
    def constant(cls, seconds: float) -> Dist:
        """Always `seconds`."""
        return cls("constant", seconds, seconds, seconds)

    @classmethod
    def uniform(cls, low: float, high: float) -> Dist:
        """Uniform between `low` and `high`."""
        if not 0 <= low <= high:
            raise ValueError(f"need 0 <= low <= high, got {low}, {high}")
        return cls("uniform", low, high, (low + high) / 2)

    @classmethod
    def exponential(cls, mean: float, floor: float = 0.0) -> Dist:
        """`floor` plus an exponential tail with the given mean."""
        if mean <= 0 or floor < 0:
            raise ValueError("need mean > 0 and floor >= 0")
        return cls("exponential", floor, floor, mean)

    def sample(self, rng: random.Random) -> float:
        """One latency draw."""
        kind = self.kind
        if kind == "uniform":  # random.uniform's formula, one call fewer
            return self.low + (self.high - self.low) * rng.random()
        if kind == "constant":
            return self.low
        return self.low + rng.expovariate(1.0 / self.mean)


@dataclass(frozen=True, slots=True)
class Link:
    """How one directed link behaves."""

    latency: Dist = field(default_factory=Dist)
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: bool = False

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")


class Network:
    """Links, partitions and one-way cuts between named nodes."""

    def __init__(self, default: Link | None = None) -> None:
        self.default = default or Link()
        self._links: dict[tuple[str, str], Link] = {}
        self._group: dict[str, int] = {}  # node -> partition group (absent: group 0)
        self._partitioned = False
        self._cuts: set[tuple[str, str]] = set()
        self._held: set[tuple[str, str]] = set()

    def link(self, src: str, dst: str) -> Link:
        """The behaviour of the link src -> dst."""
        return self._links.get((src, dst), self.default)

    def set_link(self, src: str, dst: str, **changes: object) -> None:
        """Change some properties of the link src -> dst."""
        self._links[(src, dst)] = replace(self.link(src, dst), **changes)  # type: ignore[arg-type]

    def reset_links(self) -> None:
        """Every link back to the default."""
        self._links.clear()

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Split nodes into groups that cannot reach each other; unlisted nodes form one more."""
        self._group = {}
        listed: set[str] = set()
        for index, group in enumerate(groups, start=1):
            for node in group:
                if node in listed:
                    raise ValueError(f"node {node!r} is in two partition groups")
                listed.add(node)
                self._group[node] = index
        self._partitioned = True

    def partition_oneway(self, sources: Iterable[str], destinations: Iterable[str]) -> None:
        """Drop messages from every source to every destination (the reverse still flows)."""
        targets = list(destinations)
        for src in sources:
            for dst in targets:
                if src != dst:
                    self._cuts.add((src, dst))

    def heal(self) -> None:
        """Remove every partition and one-way cut (links keep their latency and loss)."""
        self._group = {}
        self._partitioned = False
        self._cuts.clear()

    def hold(self, src: str, dst: str) -> None:
        """Hold messages on src -> dst until release()."""
        self._held.add((src, dst))

    def release(self, src: str, dst: str) -> None:
        """Stop holding src -> dst."""
        self._held.discard((src, dst))

    def is_held(self, src: str, dst: str) -> bool:
        """Whether src -> dst is held."""
        return (src, dst) in self._held

    def route(self, src: str, dst: str) -> Link | None:
        """The link src -> dst if a message can reach dst right now, else None."""
        if self._cuts and (src, dst) in self._cuts:
            return None
        if self._partitioned and self._group.get(src, 0) != self._group.get(dst, 0):
            return None
        return self._links.get((src, dst), self.default) if self._links else self.default

    @property
    def holding(self) -> bool:
        """Whether any link is held."""
        return bool(self._held)

    def reachable(self, src: str, dst: str) -> bool:
        """Whether a message from src can reach dst right now."""
        if (src, dst) in self._cuts:
            return False
        if self._partitioned and self._group.get(src, 0) != self._group.get(dst, 0):
            return False
        return True

    @property
    def faulty(self) -> bool:
        """Whether any partition or cut is in force."""
        return self._partitioned or bool(self._cuts)
