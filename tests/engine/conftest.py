"""A few Engines wired together by hand: the h11 ConnectionPair idea, for protocol unit tests."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from foundation_p2p.config import Config
from foundation_p2p.engine import Engine, Event, Output, Send, decode, encode


class EngineNet:
    """Engines that exchange messages through the real codec, on a clock the test moves."""

    def __init__(self, names: list[str], config: Config | None = None, seed: int = 1) -> None:
        self.config = config or Config.simulation()
        self.now = 0.0
        self.engines = {
            name: Engine(name, self.config, random.Random(f"{seed}-{name}"), name) for name in names
        }
        self.down: set[str] = set()
        self.cut: set[tuple[str, str]] = set()
        self.events: list[tuple[float, str, Event]] = []
        self.sent: list[tuple[str, Send]] = []
        self.queue: list[tuple[str, Send]] = []
        self.filter: Callable[[str, Send], bool] | None = None

    def __getitem__(self, name: str) -> Engine:
        return self.engines[name]

    def take(self, src: str, outputs: list[Output]) -> None:
        """Queue an engine's sends and record its events."""
        for output in outputs:
            if isinstance(output, Send):
                self.sent.append((src, output))
                self.queue.append((src, output))
            else:
                self.events.append((self.now, src, output))

    def join_all(self, seed: str) -> None:
        """Every engine joins `seed`."""
        for name, engine in self.engines.items():
            if name != seed:
                self.take(name, engine.join(self.now, seed, seed))

    def flush(self, limit: int = 10_000) -> None:
        """Deliver queued messages (and what they cause) until quiet."""
        for _ in range(limit):
            if not self.queue:
                return
            src, send = self.queue.pop(0)
            if src in self.down or send.dst in self.down or (src, send.dst) in self.cut:
                continue
            if self.filter is not None and not self.filter(src, send):
                continue
            message = decode(encode(send.message))
            self.take(send.dst, self.engines[send.dst].receive(self.now, src, message))
        raise AssertionError("message storm: the queue never drained")

    def run(self, seconds: float, step: float = 0.05) -> None:
        """Advance time in steps, ticking every live engine and delivering at once."""
        end = self.now + seconds
        while self.now < end:
            self.now = round(self.now + step, 9)
            for name, engine in self.engines.items():
                if name not in self.down:
                    self.take(name, engine.tick(self.now))
            self.flush()

    def events_of(self, name: str, kind: type) -> list[Event]:
        """Events of one type reported by one engine."""
        return [e for _, n, e in self.events if n == name and isinstance(e, kind)]


@pytest.fixture
def engine_net() -> Callable[..., EngineNet]:
    """Factory: engine_net(["a", "b"], config=None, seed=1)."""
    return EngineNet
