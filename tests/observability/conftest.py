"""Loopback clusters of in-process Nodes for the observability tests (real sockets, bounded)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from foundation_p2p import Config, telemetry
from foundation_p2p.engine import Engine, decode
from foundation_p2p.engine.messages import SyncDelta
from foundation_p2p.node import Node
from foundation_p2p.runtime.driver import Driver
from tests.realnodes import eventually as _eventually

Eventually = Callable[..., Awaitable[None]]
MakeCluster = Callable[..., Awaitable[list[Node]]]


def fast_config(**overrides: Any) -> Config:
    """Quick timers; a suspicion lasts 10 probe intervals (2 s) so a 500 ms poll sees it."""
    settings: dict[str, Any] = {
        "probe_interval": 0.2,
        "probe_timeout": 0.1,
        "anti_entropy_interval": 0.2,
        "suspicion_mult": 10,
    }
    settings.update(overrides)
    return Config.development(**settings)


class Wire:
    """Frames in flight between drivers. Deltas (pushes and anti-entropy replies) from a node
    in `drop_deltas_from` are lost; frames from src to dst are lost while (src, dst) is in
    `blocked`."""

    def __init__(self) -> None:
        self.in_flight: list[tuple[str, str, bytes]] = []
        self.sent: list[tuple[str, str, bytes]] = []
        self.drop_deltas_from: set[str] = set()
        self.blocked: set[tuple[str, str]] = set()

    def transport(self, me: str) -> Any:
        wire = self

        class Transport:
            def send(self, peer_id: str, body: bytes, address: str | None = None) -> bool:
                wire.sent.append((me, peer_id, body))
                message = decode(body)
                lost = (me, peer_id) in wire.blocked or (
                    me in wire.drop_deltas_from and isinstance(message, SyncDelta)
                )
                if not lost:
                    wire.in_flight.append((me, peer_id, body))
                return True

            def disconnect(self, peer_id: str) -> bool:
                return True

        return Transport()


class Bench:
    """Drivers a, b, ... (never started: nothing is timed, every tick is ours)."""

    def __init__(self, names: tuple[str, ...] = ("a", "b")) -> None:
        self.now = 100.0
        self.wire = Wire()
        config = Config.development()
        self.drivers = {
            name: Driver(
                Engine(name, config, random.Random(i), f"127.0.0.1:{7000 + i}"),
                self.wire.transport(name),
                clock=lambda: self.now,
            )
            for i, name in enumerate(names)
        }

    def __getitem__(self, name: str) -> Driver:
        return self.drivers[name]

    def deliver(self, limit: int = 200) -> None:
        for _ in range(limit):
            if not self.wire.in_flight:
                return
            src, dst, body = self.wire.in_flight.pop(0)
            self.drivers[dst].on_frame(src, body)
        raise AssertionError("the exchange did not settle")

    def tick(self, seconds: float) -> None:
        self.now += seconds
        for driver in self.drivers.values():
            driver._fire()

    def run(self, seconds: float, step: float = 0.05) -> None:
        """Let time pass in small steps, delivering everything, so members stay alive."""
        for _ in range(round(seconds / step)):
            self.tick(step)
            self.deliver()

    def connect(self) -> None:
        for i, name in enumerate(self.drivers):
            if name != "a":
                self["a"].join(name, f"127.0.0.1:{7000 + i}")
        self.deliver()

    def cut(self, x: str, y: str) -> None:
        """Lose every frame between x and y, both ways."""
        self.wire.blocked |= {(x, y), (y, x)}

    def crash(self, name: str) -> None:
        """`name` neither sends nor receives any more."""
        for other in self.drivers:
            if other != name:
                self.cut(name, other)


@pytest.fixture
def make_bench() -> type[Bench]:
    """`make_bench(("a", "b", "c"))`: a bench of other sizes."""
    return Bench


@pytest.fixture
def bench() -> Bench:
    """Two never-started Drivers "a" and "b" over a hand-delivered wire, time set by hand."""
    return Bench()


@pytest.fixture
def eventually() -> Eventually:
    """`await eventually(check, timeout)`: poll until `check()` holds."""
    return _eventually


@pytest.fixture
async def make_cluster() -> AsyncIterator[MakeCluster]:
    """`await make_cluster(3, http=True)`: n0..n(k-1) on loopback, all alive; every node
    (and every one a test adds to the returned list) is stopped at teardown."""
    started: list[Node] = []

    async def make(count: int, http: bool = False, **config: Any) -> list[Node]:
        nodes: list[Node] = []
        for i in range(count):
            node = Node(
                cluster="obs",
                node_id=f"n{i}",
                config=fast_config(**config),
                seeds=[nodes[0].address] if nodes else [],
                http="127.0.0.1:0" if http else None,
            )
            await node.start()
            started.append(node)
            nodes.append(node)
        await _eventually(lambda: all(len(n.members()) == count for n in nodes))
        await _eventually(lambda: all(set(n.members().values()) == {"alive"} for n in nodes))
        return nodes

    yield make
    for node in started:
        await node.stop(leave=False)


class Recorder:
    """Attaches itself to telemetry events and keeps what it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[telemetry.EventName, dict[str, float], dict[str, Any]]] = []
        self._detachers: list[Callable[[], object]] = []

    def __call__(self, name: telemetry.EventName, measurements: Any, metadata: Any) -> None:
        self.received.append((name, dict(measurements), dict(metadata)))

    def attach(self, *names: telemetry.EventName | str) -> Recorder:
        for name in names:
            self._detachers.append(telemetry.attach(name, self))
        return self

    def of(self, name: telemetry.EventName) -> list[tuple[dict[str, float], dict[str, Any]]]:
        return [(m, meta) for n, m, meta in self.received if n == name]

    def detach(self) -> None:
        for detach in self._detachers:
            detach()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """A telemetry recorder, detached at teardown (handlers are process-wide)."""
    recording = Recorder()
    yield recording
    recording.detach()
