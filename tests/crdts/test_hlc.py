"""Hybrid logical clocks and timestamps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdts import HLC, ClockDriftError, DecodeError, Timestamp

MAX_COUNTER = 2**32 - 1
walls = st.integers(0, 2_000)
remote_timestamps = st.builds(
    Timestamp, st.integers(0, 2_000), st.integers(0, 50), st.sampled_from(["a", "b", "z"])
)


@given(st.lists(walls, min_size=1, max_size=30))
def test_now_is_strictly_monotonic_and_never_behind_the_wall(wall_times: list[int]) -> None:
    clock, previous = HLC("a"), None
    for wall in wall_times:
        ts = clock.now(wall)
        assert ts.wall_ms >= wall and ts.node == "a"
        assert previous is None or ts > previous
        assert clock.last == ts
        assert Timestamp.checked(ts) is ts
        previous = ts


@given(st.lists(st.one_of(walls.map(lambda w: (w, None)), st.tuples(walls, remote_timestamps))))
def test_observe_moves_past_the_remote_and_everything_before(
    events: list[tuple[int, Timestamp | None]],
) -> None:
    clock, seen = HLC("a"), Timestamp(0, 0, "")
    for wall, remote in events:
        ts = clock.now(wall) if remote is None else clock.observe(remote, wall)
        assert ts > seen and ts.wall_ms >= wall
        if remote is not None:
            assert ts > remote
            assert ts.wall_ms == max(wall, remote.wall_ms, seen.wall_ms)
        seen = max(seen, ts) if remote is None else max(seen, ts, remote)
        assert clock.now(wall) > seen  # and the next local event is later still
        seen = clock.last


def test_observe_examples() -> None:
    clock = HLC("a")
    assert clock.now(100) == Timestamp(100, 0, "a")
    assert clock.now(100) == Timestamp(100, 1, "a")
    assert clock.now(90) == Timestamp(100, 2, "a")  # the wall clock went back: count on
    assert clock.observe(Timestamp(500, 7, "b"), 120) == Timestamp(500, 8, "a")
    assert clock.observe(Timestamp(500, 3, "b"), 120) == Timestamp(500, 9, "a")
    assert clock.observe(Timestamp(10, 0, "b"), 600) == Timestamp(600, 0, "a")
    assert clock.now(601) == Timestamp(601, 0, "a")


def test_max_drift_refuses_timestamps_too_far_ahead() -> None:
    clock = HLC("a", max_drift_ms=1_000)
    clock.now(5_000)
    before = clock.last
    assert issubclass(ClockDriftError, ValueError)
    with pytest.raises(ClockDriftError):
        clock.observe(Timestamp(6_001, 0, "b"), 5_000)
    assert clock.last == before  # refused before any change
    assert clock.observe(Timestamp(6_000, 0, "b"), 5_000) == Timestamp(6_000, 1, "a")
    HLC("b").observe(Timestamp(10**12, 0, "a"), 0)  # no limit by default


def test_exhausted_logical_counter_raises_before_any_change() -> None:
    clock = HLC("a")
    clock.observe(Timestamp(100, MAX_COUNTER - 1, "b"), 100)
    assert clock.last == Timestamp(100, MAX_COUNTER, "a")
    with pytest.raises(ClockDriftError):
        clock.now(100)
    with pytest.raises(ClockDriftError):
        clock.observe(Timestamp(100, MAX_COUNTER, "b"), 50)
    assert clock.last == Timestamp(100, MAX_COUNTER, "a")
    assert clock.now(101) == Timestamp(101, 0, "a")  # the wall clock moving on fixes it


def test_observe_rejects_what_is_not_a_timestamp() -> None:
    clock = HLC("a")
    for bad in [(100, 0, "b"), Timestamp(-1, 0, "b"), Timestamp(100, 2**32, "b"), None]:
        with pytest.raises((TypeError, ValueError)):
            clock.observe(bad, 0)  # type: ignore[arg-type]
        assert clock.last == Timestamp(0, 0, "a")
    with pytest.raises(TypeError):
        HLC("")


@pytest.mark.parametrize("wall", [2**63, 2**70, 1.5], ids=["2**63", "2**70", "float"])
def test_now_refuses_a_wall_time_no_timestamp_can_hold(wall: object) -> None:
    """BUG: HLC.now() takes any wall_ms, so now(2**63) returns a Timestamp that every
    mutator then refuses (Timestamp.checked) and -- worse -- leaves the clock stuck there:
    every later now() stays at 2**63 and every later LWW write fails. now(1.5) (e.g.
    time.time() * 1000) likewise yields a timestamp no mutator or decoder accepts. It
    should raise ValueError/TypeError and stay where it was."""
    clock = HLC("a")
    before = clock.last
    try:
        ts = clock.now(wall)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        assert clock.last == before
        return
    assert Timestamp.checked(ts) is ts
    assert Timestamp.from_wire(ts.to_wire()) == ts


def test_timestamps_order_by_wall_then_counter_then_node() -> None:
    assert Timestamp(2, 0, "a") > Timestamp(1, 9, "z")
    assert Timestamp(1, 2, "a") > Timestamp(1, 1, "z")
    assert Timestamp(1, 1, "b") > Timestamp(1, 1, "a")


@given(remote_timestamps)
def test_timestamp_wire_round_trip(ts: Timestamp) -> None:
    assert Timestamp.from_wire(ts.to_wire()) == ts
    assert Timestamp.from_wire(tuple(ts.to_wire())) == ts


def test_timestamp_from_wire_rejects_bad_input() -> None:
    for bad in [
        None,
        [],
        [1, 2],
        [1, 2, 3],
        [-1, 0, "a"],
        [2**63, 0, "a"],
        [1, 2**32, "a"],
        [True, 0, "a"],
        [1.0, 0, "a"],
        [1, 0, b"a"],
        "1,0,a",
        [1, 0, "a", 4],
    ]:
        with pytest.raises(DecodeError):
            Timestamp.from_wire(bad)
