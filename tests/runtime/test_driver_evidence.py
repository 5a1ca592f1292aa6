"""The driver feeds the transport's evidence (a dropped connection, a refused dial) to the
engine, and logs each kind of refusal at most once per peer per interval, never twice."""

from __future__ import annotations

import logging
import random

import pytest

from foundation_p2p.config import Config
from foundation_p2p.engine import Engine, MemberSuspect, decode
from foundation_p2p.engine.messages import Ping
from foundation_p2p.runtime.driver import Driver


class FakeTransport:
    """Records what the driver sends; never fails."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.disconnected: list[str] = []

    def send(self, peer_id: str, body: bytes, address: str | None = None) -> bool:
        self.sent.append((peer_id, body))
        return True

    def disconnect(self, peer_id: str) -> bool:
        self.disconnected.append(peer_id)
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def driver_with_peer() -> tuple[Driver, FakeTransport, list[object]]:
    engine = Engine("a", Config.production(), random.Random(1), "127.0.0.1:1")
    transport = FakeTransport()
    driver = Driver(engine, transport, clock=Clock())
    events: list[object] = []
    driver.subscribe(events.append)
    driver.join("b", "127.0.0.1:2")
    transport.sent.clear()
    events.clear()
    return driver, transport, events


def test_a_dropped_connection_sends_a_probe_at_once() -> None:
    driver, transport, _ = driver_with_peer()
    driver.on_peer_lost("b")
    assert [(peer, type(decode(body))) for peer, body in transport.sent] == [("b", Ping)]


def test_a_refused_dial_makes_the_peer_suspect_at_once() -> None:
    driver, _, events = driver_with_peer()
    driver.on_unreachable("b", "cannot reach 127.0.0.1:2: Connection refused")
    assert driver.engine.members()["b"] == "suspect"
    assert MemberSuspect("b") in events


def test_a_flood_of_undecodable_frames_logs_one_line_and_counts_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="foundation_p2p.runtime")
    driver, _, events = driver_with_peer()
    for _ in range(1000):
        driver.on_frame("b", b"\xc1 not msgpack")
    refused = {k: v for k, v in driver.engine.counters.items() if k.startswith("refused.")}
    assert sum(refused.values()) == 1000 and len(refused) == 1
    assert len(events) == 1000  # listeners still hear of every refusal
    lines = [r.getMessage() for r in caplog.records if r.name == "foundation_p2p.runtime"]
    assert len(lines) == 1 and lines[0].startswith("refused from b:")
    driver.clock.now += 10.0  # type: ignore[attr-defined]
    driver.on_frame("b", b"\xc1 not msgpack")
    lines = [r.getMessage() for r in caplog.records if r.name == "foundation_p2p.runtime"]
    assert len(lines) == 2 and lines[1].endswith("(999 more like it suppressed in the last 10s)")


def test_a_transport_refusal_is_counted_but_not_logged_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="foundation_p2p.runtime")
    driver, _, events = driver_with_peer()
    driver.on_refused("bad_handshake", "refused connection from 127.0.0.1:5: not a handshake")
    assert driver.engine.counters["refused.bad_handshake"] == 1
    assert len(events) == 1
    assert not [r for r in caplog.records if r.name == "foundation_p2p.runtime"]
