"""foundation_p2p.telemetry: attach, detach, execute; a failing handler is detached and logged."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from foundation_p2p import telemetry

NAME = ("tests", "telemetry", "api")


@pytest.fixture(autouse=True)
def clean_handlers():
    """Handlers are process-wide: each test leaves none of its own behind."""
    before = dict(telemetry._handlers)
    yield
    telemetry._handlers.clear()
    telemetry._handlers.update(before)


def test_a_handler_receives_name_measurements_and_metadata():
    received: list[tuple[Any, ...]] = []
    telemetry.attach(NAME, lambda *event: received.append(event))
    telemetry.execute(NAME, {"bytes": 12}, {"node": "a", "replica": "r"})
    assert received == [(NAME, {"bytes": 12}, {"node": "a", "replica": "r"})]


def test_dotted_names_and_tuples_are_the_same_event():
    received: list[Any] = []
    telemetry.attach("tests.telemetry.api", lambda name, m, meta: received.append(name))
    telemetry.execute(NAME, {"count": 1})
    telemetry.execute("tests.telemetry.api", {"count": 1})
    assert received == [NAME, NAME]
    assert telemetry.active(NAME)


def test_detach_stops_delivery_and_reports_whether_it_was_attached():
    received: list[Any] = []

    def handler(name: Any, measurements: Any, metadata: Any) -> None:
        received.append(measurements)

    detach = telemetry.attach(NAME, handler)
    telemetry.attach(NAME, handler)  # attaching twice delivers once
    telemetry.execute(NAME, {"count": 1})
    assert detach() is True
    assert telemetry.detach(NAME, handler) is False
    telemetry.execute(NAME, {"count": 2})
    assert received == [{"count": 1}]
    assert not telemetry.active(NAME)


def test_other_events_do_not_reach_a_handler():
    received: list[Any] = []
    telemetry.attach(NAME, lambda *event: received.append(event))
    telemetry.execute(("tests", "telemetry", "other"), {"count": 1})
    telemetry.execute(("tests", "telemetry"), {"count": 1})
    assert received == []


def test_a_raising_handler_is_detached_logged_and_the_others_still_run(caplog):
    received: list[Any] = []

    def broken(name: Any, measurements: Any, metadata: Any) -> None:
        raise RuntimeError("handler bug")

    telemetry.attach(NAME, broken)
    telemetry.attach(NAME, lambda *event: received.append(event))
    with caplog.at_level(logging.ERROR, logger="foundation_p2p.telemetry"):
        telemetry.execute(NAME, {"count": 1}, {"node": "a"})
    assert "detached" in caplog.text and "handler bug" in caplog.text
    assert broken not in telemetry.handlers(NAME)
    telemetry.execute(NAME, {"count": 2}, {"node": "a"})
    assert [m for _, m, _ in received] == [{"count": 1}, {"count": 2}]


def test_attach_many_and_its_detacher():
    received: list[Any] = []
    other = ("tests", "telemetry", "other")
    detach_all = telemetry.attach_many([NAME, other], lambda name, m, meta: received.append(name))
    telemetry.execute(NAME, {})
    telemetry.execute(other, {})
    detach_all()
    telemetry.execute(NAME, {})
    assert received == [NAME, other]


@pytest.mark.parametrize("bad", ["", "a..b", (), ("a", ""), ("a", 1), 42, None])
def test_a_malformed_event_name_is_refused(bad: Any):
    with pytest.raises((TypeError, ValueError)):
        telemetry.attach(bad, lambda *event: None)


def test_a_handler_must_be_callable():
    with pytest.raises(TypeError):
        telemetry.attach(NAME, "not a function")  # type: ignore[arg-type]


def test_with_no_handler_execute_calls_nothing_and_returns():
    telemetry._handlers.clear()
    assert telemetry.execute(NAME, {"count": 1}, {"node": "a"}) is None
    assert not telemetry.active(NAME)


def test_every_documented_event_is_a_tuple_under_foundation_p2p():
    for name, (measurements, metadata) in telemetry.EVENTS.items():
        assert name[0] == "foundation_p2p" and len(name) == 3
        assert measurements and metadata
    assert telemetry.SINGLETON_MOVED in telemetry.EVENTS
    assert telemetry.CACHE_HIT in telemetry.EVENTS and telemetry.CACHE_MISS in telemetry.EVENTS
