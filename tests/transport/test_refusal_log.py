"""Refusal log lines are rate-limited (counters still count each one), and a dial refused by a
peer's address is reported as evidence that the peer is gone. Real sockets on 127.0.0.1 only;
every wait is bounded and every transport is closed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest

from transport import Limits, Transport, parse_address
from transport.tcp import LOG_INTERVAL, LogLimiter

pytestmark = pytest.mark.timeout(60)

FAST = Limits(handshake_timeout=1.0, reconnect_initial=0.02, reconnect_max=0.1)
FLOOD = 40  # hostile connections, each refused


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_key_per_interval_then_the_suppressed_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.refusal_log")
    clock = FakeClock()
    limiter = LogLimiter(logger, interval=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.refusal_log"):
        assert limiter.warning(("bad", "1.2.3.4"), "refused %s", "first")
        for _ in range(5):
            assert not limiter.warning(("bad", "1.2.3.4"), "refused %s", "again")
        assert limiter.warning(("bad", "5.6.7.8"), "refused %s", "other peer")
        assert limiter.warning(("worse", "1.2.3.4"), "refused %s", "other reason")
        clock.now += 10.0
        assert limiter.warning(("bad", "1.2.3.4"), "refused %s", "later")
    assert [r.getMessage() for r in caplog.records] == [
        "refused first",
        "refused other peer",
        "refused other reason",
        "refused later (5 more like it suppressed in the last 10s)",
    ]


def test_a_flood_from_ever_new_sources_keeps_the_limiter_bounded() -> None:
    clock = FakeClock()
    limiter = LogLimiter(logging.getLogger("test.refusal_log.bounded"), clock=clock)
    for i in range(20_000):
        limiter.warning(("bad", f"10.0.{i // 256}.{i % 256}"), "x")
    assert len(limiter._keys) <= 4096


@pytest.fixture
async def transports() -> AsyncIterator[Callable[..., asyncio.Future[Transport]]]:
    made: list[Transport] = []

    async def build(node_id: str, **callbacks: object) -> Transport:
        transport = Transport(
            node_id, "plant", 1, limits=FAST, on_frame=lambda peer, body: None, **callbacks
        )  # type: ignore[arg-type]
        await transport.start("127.0.0.1:0")
        made.append(transport)
        return transport

    yield build  # type: ignore[misc]
    for transport in made:
        await asyncio.wait_for(transport.close(), 5)


async def test_a_flood_of_bad_handshakes_logs_one_line_and_counts_every_one(
    transports: Callable[..., asyncio.Future[Transport]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="foundation_p2p.transport")
    refusals: list[str] = []
    server = await transports("server", on_refused=lambda reason, detail: refusals.append(reason))
    host, port = parse_address(server.listen_address)
    for _ in range(FLOOD):
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        writer.write(b"\x00\x00\x00\x10this is no hello")
        try:
            await asyncio.wait_for(reader.read(), 5)  # the server closes it
        except ConnectionResetError:
            pass
        writer.close()
    deadline = time.monotonic() + 5
    while server.counters["bad_handshake"] < FLOOD and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert server.counters["bad_handshake"] == FLOOD
    assert refusals == ["bad_handshake"] * FLOOD
    lines = [r.getMessage() for r in caplog.records if r.name == "foundation_p2p.transport"]
    assert len(lines) == 1 and lines[0].startswith("refused connection from 127.0.0.1:")
    assert LOG_INTERVAL == 10.0


async def test_a_connection_in_use_lost_is_reported_but_not_an_idle_close(
    transports: Callable[..., asyncio.Future[Transport]],
) -> None:
    lost: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    quick = Limits(idle_timeout=0.3, handshake_timeout=1.0)
    a = await transports("a", on_peer_lost=lost["a"].append)
    b = await transports("b", on_peer_lost=lost["b"].append)
    assert await asyncio.wait_for(a.connect(b.listen_address), 5) == "b"
    await asyncio.wait_for(b.close(), 5)  # b goes away while the connection is fresh
    deadline = time.monotonic() + 5
    while not lost["a"] and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert lost["a"] == ["b"]
    c = Transport("c", "plant", 1, limits=quick, on_frame=lambda p, b: None)
    d = Transport("d", "plant", 1, limits=quick, on_frame=lambda p, b: None)
    c._on_peer_lost, d._on_peer_lost = lost["c"].append, lost["c"].append
    downs: list[str] = []
    c._on_peer_down = downs.append
    try:
        await c.start("127.0.0.1:0")
        address = await d.start("127.0.0.1:0")
        await asyncio.wait_for(c.connect(address), 5)
        while not downs and time.monotonic() < deadline:  # closed for idleness by either end
            await asyncio.sleep(0.01)
        assert downs == ["d"] and lost["c"] == []
    finally:
        await asyncio.wait_for(c.close(), 5)
        await asyncio.wait_for(d.close(), 5)


async def test_a_refused_dial_to_a_known_peer_reports_it_unreachable(
    transports: Callable[..., asyncio.Future[Transport]],
) -> None:
    downs: list[str] = []
    unreachable: list[tuple[str, str]] = []
    a = await transports(
        "a",
        on_peer_down=downs.append,
        on_unreachable=lambda peer, detail: unreachable.append((peer, detail)),
    )
    b = await transports("b")
    address = b.listen_address
    assert await asyncio.wait_for(a.connect(address), 5) == "b"
    await asyncio.wait_for(b.close(), 5)  # the process is gone: its port refuses connections
    deadline = time.monotonic() + 5
    while not downs and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert downs == ["b"] and not unreachable
    assert a.send("b", b"are you there?", address)
    while not unreachable and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert [peer for peer, _ in unreachable] == ["b"]
    assert "cannot reach" in unreachable[0][1]
