"""The pytest plugin: fixtures work in a user's suite, a failure prints its seed, and
--sim-seed replays it exactly."""

from __future__ import annotations

import re

import pytest

from crdts import PNCounter
from simulations import SimCluster
from simulations.testing import SimClusterFactory, assert_eventually

pytest_plugins = ["pytester"]

PASSING = """
from crdts import PNCounter

def test_counter_converges(sim_cluster, assert_eventually):
    sim = sim_cluster(nodes=3)
    sim.node("n0").replica("hits", PNCounter).increment(2)
    took = assert_eventually(
        sim, lambda s: all(n.replica("hits", PNCounter).value == 2 for n in s.live_nodes())
    )
    assert 0 < took < 30
"""

FAILING = """
from crdts import PNCounter

def test_partitioned_counter(sim_cluster, assert_eventually):
    sim = sim_cluster(nodes=3)
    other = sim_cluster(nodes=2)
    sim.partition(["n0"], ["n1", "n2"])
    sim.node("n0").replica("hits", PNCounter).increment(2)
    sim.run_for(3.0)
    print(f"SEEDS={sim.seed},{other.seed} DIGEST={sim.trace_digest()}")
    assert_eventually(sim, lambda s: s.converged(), timeout=5.0, message="hits never agreed")
"""

SEEDS = """
def test_seeds(sim_cluster):
    first, second = sim_cluster(), sim_cluster(nodes=2)
    explicit = sim_cluster(seed=7)
    assert (first.seed, second.seed, explicit.seed) == (4242, 4243, 7)
"""


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # In-process runs re-register the plugin whose modules this process already imported.
    quiet = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")
    return pytester.runpytest(*quiet, *args)


def test_fixtures_work_in_a_users_suite(pytester: pytest.Pytester) -> None:
    """sim_cluster and assert_eventually come from the entry point, with no conftest."""
    pytester.makepyfile(PASSING)
    result = _run(pytester)
    result.assert_outcomes(passed=1)
    assert "simulator seeds" not in result.stdout.str()


def test_a_failure_prints_the_seed_and_replays_with_sim_seed(pytester: pytest.Pytester) -> None:
    """The report names the base seed; --sim-seed with it reruns the very same clusters."""
    pytester.makepyfile(FAILING)
    result = _run(pytester)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    match = re.search(r"sim_cluster base seed (\d+); replay with: pytest \S+ --sim-seed (\d+)", out)
    assert match and match.group(1) == match.group(2), out
    base = int(match.group(1))
    assert f"SimCluster seed {base}: 3 nodes, virtual time 8.000 s" in out
    assert f"SimCluster seed {base + 1}: 2 nodes" in out
    assert f"hits never agreed: not within 5 virtual seconds (seed {base}," in out
    assert "replicas_equal: n1 lacks replica 'hits'" in out
    assert "no_lost_writes: n1 lacks 'hits' written at 0.000" in out
    assert "memberships_agree:" in out
    first_run = re.search(r"SEEDS=\S+ DIGEST=\w+", out)
    assert first_run and first_run.group(0).startswith(f"SEEDS={base},{base + 1} "), out

    replay = _run(pytester, "--sim-seed", str(base))
    replay.assert_outcomes(failed=1)
    assert first_run.group(0) in replay.stdout.str()
    assert f"foundation-p2p simulator: --sim-seed {base}" in replay.stdout.str()


def test_sim_seed_sets_the_base_of_derived_seeds(pytester: pytest.Pytester) -> None:
    """--sim-seed N gives clusters N, N+1, ...; an explicit seed stays as given."""
    pytester.makepyfile(SEEDS)
    _run(pytester, "--sim-seed", "4242").assert_outcomes(passed=1)
    _run(pytester).assert_outcomes(failed=1)


def test_assert_eventually_fits_hypothesis_tests(pytester: pytest.Pytester) -> None:
    """assert_eventually is session-scoped, so @given tests raise no fixture health check."""
    pytester.makepyfile(
        """
        from hypothesis import given, settings, strategies as st
        from simulations import SimCluster

        @settings(max_examples=3, database=None)
        @given(seed=st.integers(0, 2**32 - 1))
        def test_converges(assert_eventually, seed):
            assert_eventually(SimCluster(nodes=3, seed=seed), lambda s: s.converged())
        """
    )
    _run(pytester).assert_outcomes(passed=1)


def test_assert_eventually_returns_the_time_it_took() -> None:
    """On success it returns the virtual seconds spent."""
    sim = SimCluster(nodes=3, seed=1)
    sim.node("n2").replica("hits", PNCounter).increment()
    took = assert_eventually(sim, lambda s: s.converged())
    assert took == pytest.approx(sim.now)


def test_assert_eventually_explains_a_failure() -> None:
    """The error names the predicate, seed, virtual time, and the invariants' problems."""
    sim = SimCluster(nodes=3, seed=12)
    sim.crash("n2")

    def n2_is_back(s: SimCluster) -> bool:
        return s.node("n2").up

    with pytest.raises(AssertionError) as failure:
        assert_eventually(sim, n2_is_back, timeout=2.0)
    text = str(failure.value)
    assert text.startswith("n2_is_back did not hold: not within 2 virtual seconds (seed 12,")
    assert "virtual time 2.000 s" in text
    assert "memberships_agree: n0 sees stopped n2 as" in text


def test_factory_describes_its_clusters_without_pytest() -> None:
    """SimClusterFactory works on its own, e.g. in a script or a doc example."""
    factory = SimClusterFactory(base_seed=100)
    sims = [factory(nodes=2), factory(nodes=4), factory(nodes=2, seed=5)]
    assert [s.seed for s in sims] == [100, 101, 5]
    text = factory.describe("tests/test_x.py::test_y")
    assert 'replay with: pytest "tests/test_x.py::test_y" --sim-seed 100' in text
    assert "SimCluster seed 5 (explicit seed): 2 nodes, virtual time 0.000 s" in text
