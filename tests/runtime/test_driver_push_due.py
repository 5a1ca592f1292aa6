"""push_due: a local write whose push is due goes out, and is written, without a timer turn."""

from __future__ import annotations

import asyncio
import random

import msgpack

from crdts import GCounter
from foundation_p2p.config import Config
from foundation_p2p.engine import Engine, decode
from foundation_p2p.engine.messages import Ack, SyncDelta
from foundation_p2p.runtime.driver import Driver


class FlushingTransport:
    """Records sends and the peers written at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.flushed: list[str] = []

    def send(self, peer_id: str, body: bytes, address: str | None = None) -> bool:
        self.sent.append((peer_id, body))
        return True

    def disconnect(self, peer_id: str) -> bool:
        return True

    def flush_now(self, peer_id: str) -> None:
        self.flushed.append(peer_id)


def driver_with_live_peer() -> tuple[Driver, FlushingTransport]:
    engine = Engine("a", Config.production(), random.Random(1), "127.0.0.1:1")
    transport = FlushingTransport()
    driver = Driver(engine, transport, clock=lambda: 1000.0)
    driver.join("b", "127.0.0.1:2")
    driver._handle(engine.receive(1000.0, "b", Ack(0)))  # heard from: alive
    assert engine.membership.peers(("alive",)) == ["b"]
    transport.sent.clear()
    return driver, transport


def test_a_due_push_is_sent_and_written_at_once() -> None:
    driver, transport = driver_with_live_peer()
    counter = driver.engine.replica("hits", GCounter)
    driver.local_write("hits", counter.increment(2))
    assert transport.sent == []  # without push_due it waits for the timer
    driver.push_due()
    pushes = [decode(body) for _, body in transport.sent]
    assert [type(m) for m in pushes].count(SyncDelta) == 1  # with any other due timer's sends
    assert transport.flushed == ["b"]


def test_nothing_due_sends_nothing() -> None:
    driver, transport = driver_with_live_peer()
    driver.push_due()
    assert transport.sent == [] and transport.flushed == []


async def test_writes_of_one_turn_share_one_push_sent_on_the_next_turn() -> None:
    driver, transport = driver_with_live_peer()
    driver.start()
    try:
        transport.sent.clear()
        counter = driver.engine.replica("hits", GCounter)
        driver.local_write("hits", counter.increment(1))
        driver.local_write("hits", counter.increment(1))  # no push_due: a write in mid-turn
        assert transport.sent == []
        await asyncio.sleep(0)  # the next loop turn
        pushes = [m for m in (decode(body) for _, body in transport.sent) if type(m) is SyncDelta]
        assert len(pushes) == 1 and transport.flushed == ["b"]
        assert GCounter.from_wire(msgpack.unpackb(pushes[0].deltas[0].payload)).value == 2
    finally:
        driver.stop()


class SendingNowTransport(FlushingTransport):
    """Also records frames given to send_now (written at once)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_now: list[tuple[str, bytes]] = []

    def send_now(self, peer_id: str, body: bytes, address: str | None = None) -> bool:
        self.sent_now.append((peer_id, body))
        return True


async def test_push_after_writes_the_push_in_its_callback_and_queues_nothing() -> None:
    driver, _ = driver_with_live_peer()
    transport = SendingNowTransport()
    driver.transport = transport
    driver.start()
    try:
        transport.sent.clear()  # the start's own tick
        loop = asyncio.get_running_loop()
        counter = driver.engine.replica("hits", GCounter)
        queued = len(loop._ready)  # type: ignore[attr-defined]
        driver.push_after(lambda: driver.local_write("hits", counter.increment(1)))
        pushes = [m for m in (decode(b) for _, b in transport.sent_now) if type(m) is SyncDelta]
        assert len(pushes) == 1 and transport.sent == []
        assert len(loop._ready) == queued  # type: ignore[attr-defined]  # no extra loop turn
    finally:
        driver.stop()
