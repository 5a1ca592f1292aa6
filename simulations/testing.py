"""A pytest plugin for testing replicated logic on the simulator (loaded by entry point pytest11).

Fixtures: `sim_cluster` (a factory of seeded SimClusters whose seeds are printed when a test
fails) and `assert_eventually`. Option: `--sim-seed N` replays a failing test's clusters.
The Hypothesis strategy `fault_schedules` and `settle` are re-exported for convenience.
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from simulations.cluster import SimCluster
from simulations.faults import FaultEvent, FaultSchedule, fault_schedules, heal_and_settle, settle
from simulations.invariants import (
    memberships_agree,
    no_lost_writes,
    no_resurrection,
    replicas_equal,
)

__all__ = [
    "FaultEvent",
    "FaultSchedule",
    "SimClusterFactory",
    "assert_eventually",
    "failure_message",
    "fault_schedules",
    "heal_and_settle",
    "random_seed",
    "settle",
]

SEED_OPTION = "--sim-seed"
CHECKERS: tuple[Callable[[SimCluster], list[str]], ...] = (
    replicas_equal,
    memberships_agree,
    no_lost_writes,
    no_resurrection,
)
MAX_PROBLEMS = 8  # per checker, in an assertion message
MAX_LISTED_CLUSTERS = 10  # in a failure report

# The base seed of the factory that made a cluster, so a failure message can say how to replay.
_BASE_SEEDS: weakref.WeakKeyDictionary[SimCluster, int] = weakref.WeakKeyDictionary()
_FACTORY = pytest.StashKey["SimClusterFactory"]()


def random_seed() -> int:
    """A fresh seed from the operating system, small enough to type back in."""
    return random.SystemRandom().randrange(2**32)


@dataclass(frozen=True, slots=True)
class _Made:
    seed: int
    derived: bool
    nodes: int
    cluster: weakref.ref[SimCluster]


class SimClusterFactory:
    """Makes SimClusters; without an explicit seed, cluster i gets `base_seed + i`."""

    def __init__(self, base_seed: int | None = None) -> None:
        self.base_seed = random_seed() if base_seed is None else base_seed
        self.made: list[_Made] = []
        self._derived = 0

    def __call__(
        self, nodes: int | Iterable[str] = 3, seed: int | None = None, **kwargs: Any
    ) -> SimCluster:
        """A new SimCluster (keyword arguments go to SimCluster); remembered for the report."""
        derived = seed is None
        if seed is None:
            seed = self.base_seed + self._derived
            self._derived += 1
        sim = SimCluster(nodes=nodes, seed=seed, **kwargs)
        if derived:
            _BASE_SEEDS[sim] = self.base_seed
        self.made.append(_Made(seed, derived, len(sim.nodes), weakref.ref(sim)))
        return sim

    def describe(self, nodeid: str = "") -> str:
        """The seeds used, each cluster's final virtual time, and how to replay them."""
        lines = []
        if any(made.derived for made in self.made):
            target = f'"{nodeid}" ' if nodeid else ""
            lines.append(
                f"sim_cluster base seed {self.base_seed}; replay with: "
                f"pytest {target}{SEED_OPTION} {self.base_seed}"
            )
        hidden = len(self.made) - MAX_LISTED_CLUSTERS
        if hidden > 0:
            lines.append(f"  ({hidden} earlier cluster(s) not listed)")
        for made in self.made[-MAX_LISTED_CLUSTERS:]:
            sim = made.cluster()
            when = f", virtual time {sim.now:.3f} s" if sim is not None else ""
            how = "" if made.derived else " (explicit seed)"
            lines.append(f"  SimCluster seed {made.seed}{how}: {made.nodes} nodes{when}")
        return "\n".join(lines)


def assert_eventually(
    sim: SimCluster,
    predicate: Callable[[SimCluster], bool],
    timeout: float = 30.0,
    message: str = "",
    *,
    step: float = 0.1,
) -> float:
    """Run `sim` until `predicate(sim)` holds and return the virtual seconds it took, or fail."""
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    start = sim.now
    if sim.run_until(predicate, timeout=timeout, step=step):
        return sim.now - start
    raise AssertionError(failure_message(sim, predicate, timeout, message))


def failure_message(
    sim: SimCluster, predicate: Callable[[SimCluster], bool], timeout: float, message: str = ""
) -> str:
    """Why `predicate` did not hold: seed, virtual time and what the invariants report."""
    name = getattr(predicate, "__name__", "") or repr(predicate)
    what = message or (f"{name} did not hold" if name != "<lambda>" else "the condition failed")
    lines = [
        f"{what}: not within {timeout:g} virtual seconds "
        f"(seed {sim.seed}, virtual time {sim.now:.3f} s)"
    ]
    base = _BASE_SEEDS.get(sim)
    if base is not None:
        lines.append(f"replay with: pytest {SEED_OPTION} {base}")
    problems = [(checker.__name__, checker(sim)) for checker in CHECKERS]
    if not any(found for _, found in problems):
        lines.append("simulations.invariants: all hold")
    for checker, found in problems:
        for problem in found[:MAX_PROBLEMS]:
            lines.append(f"  {checker}: {problem}")
        if len(found) > MAX_PROBLEMS:
            lines.append(f"  {checker}: ... and {len(found) - MAX_PROBLEMS} more")
    return "\n".join(lines)


# --- the plugin ---------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add --sim-seed."""
    group = parser.getgroup("foundation-p2p", "foundation-p2p simulator")
    group.addoption(
        SEED_OPTION,
        type=int,
        default=None,
        metavar="N",
        dest="sim_seed",
        help="base seed for clusters made by the sim_cluster fixture (replays a failure)",
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    """Say which simulator seed is in force, when one was given."""
    seed = config.getoption("sim_seed")
    return None if seed is None else f"foundation-p2p simulator: {SEED_OPTION} {seed}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Add the seeds of the test's clusters to the report of a failed phase."""
    report = yield
    factory = item.stash.get(_FACTORY, None)
    if factory is not None:
        if report.failed and factory.made:
            report.sections.append(("simulator seeds", factory.describe(item.nodeid)))
        if call.when == "teardown":
            del item.stash[_FACTORY]
    return report


@pytest.fixture
def sim_cluster(request: pytest.FixtureRequest) -> SimClusterFactory:
    """`sim_cluster(nodes=3, seed=None, **kwargs)`: a seeded SimCluster, its seed in failures."""
    factory = SimClusterFactory(request.config.getoption("sim_seed"))
    request.node.stash[_FACTORY] = factory
    return factory


@pytest.fixture(name="assert_eventually", scope="session")
def _assert_eventually_fixture() -> Callable[..., float]:
    """`assert_eventually(sim, predicate, timeout=30.0, message="")`, as a fixture."""
    return assert_eventually
