"""Singletons and spread workers, placed by rendezvous hashing over the live members.

`PlacementCore` decides, from this node's member table and the registry, which singletons and
spread workers this node should run now; it reads no clock (`now` is passed in) and runs
nothing, so the simulator drives it exactly as the asyncio `Placement` does.

A singleton's owner is the live member (alive or suspect) with the highest hash for its name,
so every node with the same member view agrees. A node starts it only when no other live node
is listed in the registry as running it (`sys.singleton/<name>`): after a heal, or when an
owner returns, the current holder stops first and the owner starts on seeing it gone. With
`quorum="majority"` a node also needs to see a strict majority of the known (not departed)
members alive, and to have held ownership for `takeover_delay`, so a cut-off holder has time
to notice it lost its quorum before the majority side starts a replacement.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from foundation_p2p.engine import Event, MemberDown, MemberLeft, MemberSuspect, MemberUp
from foundation_p2p.services.registry import (
    Registration,
    Registry,
    ServiceHost,
    rendezvous,
)

log = logging.getLogger("foundation_p2p.services.placement")

SINGLETON_PREFIX = "sys.singleton/"
QUORUMS = (None, "majority")
_LIVE = ("alive", "suspect")


@dataclass(frozen=True, slots=True)
class Transition:
    """Start or stop one singleton (index None) or spread worker on this node."""

    action: str
    name: str
    index: int | None = None
    winner: str | None = None
    """For a stopped singleton: the node that owns it now (None if nobody does)."""


@dataclass(slots=True)
class _SingletonState:
    quorum: str | None
    running: bool = False
    eligible_since: float | None = None
    not_before: float = 0.0
    registration: Registration | None = None


@dataclass(slots=True)
class _SpreadState:
    count: int
    running: set[int] = field(default_factory=set)


def has_quorum(
    view: dict[str, str],
    me: str = "",
    last_heard: dict[str, float] | None = None,
    now: float = 0.0,
    lease: float | None = None,
    members_agreed: bool = True,
) -> bool:
    """Whether a strict majority of the known (not departed) members, at least two, is alive.

    With a `lease`, a peer counts only if a message came from it within `lease` seconds: a
    member cut off from the rest notices it has lost its majority before they declare it dead.
    Without `members_agreed` (a fresh node that has met some members but never held the same
    table as a peer) the view may be a fragment of the cluster, so there is no quorum.
    """
    known = sum(1 for status in view.values() if status != "left")
    if known < 2 or not members_agreed:
        return False  # until our table matched a peer's, we may know only part of the cluster
    if lease is None or last_heard is None:
        alive = sum(1 for status in view.values() if status == "alive")
    else:
        alive = 1 + sum(
            1
            for node, status in view.items()
            if node != me and status == "alive" and now - last_heard.get(node, -lease - 1) <= lease
        )
    return alive * 2 > known


def singleton_owner(name: str, view: dict[str, str]) -> str | None:
    """The member that should run singleton `name` in this member view."""
    candidates = sorted(node for node, status in view.items() if status in _LIVE)
    owner: str | None = rendezvous(name, candidates, str) if candidates else None
    return owner


def spread_assignment(name: str, count: int, nodes: list[str]) -> dict[int, str]:
    """Worker index -> node: counts differ by at most one; each worker goes to its highest
    rendezvous rank with room, so most workers stay put as members come and go."""
    if not nodes:
        return {}
    base, extra = divmod(count, len(nodes))
    by_rank = sorted(nodes, key=lambda n: _score(name, n), reverse=True)
    room = {node: base + (1 if rank < extra else 0) for rank, node in enumerate(by_rank)}
    assignment = {}
    for index in range(count):
        ranked = sorted(nodes, key=lambda n: _score(f"{name}/{index}", n), reverse=True)
        chosen = next(n for n in ranked if room[n] > 0)
        room[chosen] -= 1
        assignment[index] = chosen
    return assignment


def _score(key: str, node: str) -> bytes:
    import hashlib

    return hashlib.blake2b(f"{key!r}\x00{node}".encode(), digest_size=8).digest()


class PlacementCore:
    """Which singletons and spread workers this node should run (sans-IO)."""

    def __init__(self, host: ServiceHost, registry: Registry, takeover_delay: float = 1.0) -> None:
        engine = host.engine
        assert engine is not None
        self.node_id = host.node_id
        self.registry = registry
        self.takeover_delay = takeover_delay
        self._engine = engine
        self.singletons: dict[str, _SingletonState] = {}
        self.spreads: dict[str, _SpreadState] = {}

    def declare_singleton(self, name: str, quorum: str | None = None) -> None:
        """This node can run singleton `name`."""
        if type(name) is not str or not name:
            raise TypeError(f"a singleton name is a non-empty str, got {name!r}")
        if quorum not in QUORUMS:
            raise ValueError(f"quorum must be None or 'majority', got {quorum!r}")
        if name in self.singletons:
            raise ValueError(f"singleton {name!r} is already declared on this node")
        self.singletons[name] = _SingletonState(quorum)

    def declare_spread(self, name: str, count: int) -> None:
        """This node takes part in running `count` workers of `name`."""
        if type(name) is not str or not name:
            raise TypeError(f"a spread name is a non-empty str, got {name!r}")
        if type(count) is not int or count < 1:
            raise ValueError(f"count must be a positive int, got {count!r}")
        if name in self.spreads:
            raise ValueError(f"spread {name!r} is already declared on this node")
        self.spreads[name] = _SpreadState(count)

    def running(self) -> set[str]:
        """The singletons this node runs now."""
        return {name for name, state in self.singletons.items() if state.running}

    def evaluate(self, now: float) -> list[Transition]:
        """Bring this node's running set in line with its member view; return what changed."""
        view: dict[str, str] = dict(self._engine.members())
        transitions = [
            t for name in list(self.singletons) for t in self._singleton(now, name, view)
        ]
        live = sorted(node for node, status in view.items() if status in _LIVE)
        for name, spread in self.spreads.items():
            assignment = spread_assignment(name, spread.count, live)
            mine = {i for i, node in assignment.items() if node == self.node_id}
            for index in sorted(spread.running - mine):
                spread.running.discard(index)
                transitions.append(Transition("stop", name, index, assignment.get(index)))
            for index in sorted(mine - spread.running):
                spread.running.add(index)
                transitions.append(Transition("start", name, index))
        return transitions

    def failed(self, now: float, name: str, retry_after: float = 1.0) -> None:
        """The singleton's function ended with an error: release it, retry after a pause."""
        state = self.singletons.get(name)
        if state is not None and state.running:
            self._release(state)
            state.not_before = now + retry_after

    def forget(self, name: str) -> list[Transition]:
        """Stop taking part in singleton or spread `name`."""
        transitions = []
        state = self.singletons.pop(name, None)
        if state is not None and state.running:
            self._release(state)
            transitions.append(Transition("stop", name))
        spread = self.spreads.pop(name, None)
        if spread is not None:
            transitions.extend(Transition("stop", name, i) for i in sorted(spread.running))
        return transitions

    def _singleton(self, now: float, name: str, view: dict[str, str]) -> list[Transition]:
        state = self.singletons[name]
        owner = singleton_owner(name, view)
        eligible = owner == self.node_id and (
            state.quorum is None
            or has_quorum(
                view,
                self.node_id,
                self._engine.last_heard,
                now,
                self._lease(view),
                self._engine.members_agreed,
            )
        )
        if state.running:
            if eligible:
                return []
            self._release(state)
            state.eligible_since = None
            return [Transition("stop", name, winner=owner if owner != self.node_id else None)]
        if not eligible:
            state.eligible_since = None
            return []
        if state.eligible_since is None:
            state.eligible_since = now
        if now < state.not_before:
            return []
        if state.quorum is not None and now - state.eligible_since < self.takeover_delay:
            return []
        holders = [
            i.node
            for i in self.registry.lookup(SINGLETON_PREFIX + name)
            if i.node != self.node_id and view.get(i.node) in _LIVE
        ]
        if holders:
            return []  # the current holder stops first
        state.running = True
        state.registration = self.registry.register_now(SINGLETON_PREFIX + name)
        return [Transition("start", name)]

    def _lease(self, view: dict[str, str]) -> float:
        """How recent a peer's last message must be to count towards a quorum: the least time
        the others need to declare us dead (a probe timeout plus the shortest suspicion)."""
        config = self._engine.config
        shortest, _ = config.suspicion_timeouts(len(view))
        return config.probe_timeout + shortest

    def _release(self, state: _SingletonState) -> None:
        state.running = False
        if state.registration is not None:
            state.registration.unregister()
            state.registration = None


class Singleton:
    """A singleton declared on this node: `running` here, the `owner` this node sees, close()."""

    def __init__(self, placement: Placement, name: str) -> None:
        self._placement = placement
        self.name = name

    @property
    def running(self) -> bool:
        """Whether this node runs the singleton now."""
        return self.name in self._placement.core.running()

    @property
    def owner(self) -> str | None:
        """The member that should run it, in this node's view."""
        return singleton_owner(self.name, dict(self._placement.core._engine.members()))

    def close(self) -> None:
        """Stop taking part (stops the local instance if it runs here)."""
        self._placement._forget(self.name)


class Spread:
    """Spread workers declared on this node: `local` indices run here; close()."""

    def __init__(self, placement: Placement, name: str) -> None:
        self._placement = placement
        self.name = name

    @property
    def local(self) -> set[int]:
        """The worker indices this node runs now."""
        spread = self._placement.core.spreads.get(self.name)
        return set(spread.running) if spread else set()

    def close(self) -> None:
        """Stop taking part (stops the local workers)."""
        self._placement._forget(self.name)


class Placement:
    """`node.singleton` and `node.spread`: runs what PlacementCore decides, as asyncio tasks."""

    def __init__(
        self,
        host: ServiceHost,
        registry: Registry,
        interval: float = 0.1,
        takeover_delay: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.core = PlacementCore(host, registry, takeover_delay)
        self.counters: Counter[str] = Counter()
        self._clock = clock
        self._interval = interval
        self._runs: dict[str, Callable[..., Awaitable[Any]]] = {}
        self._on_conflict: dict[str, Callable[[str], Any] | None] = {}
        self._tasks: dict[tuple[str, int | None], asyncio.Task[None]] = {}
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def singleton(
        self,
        name: str,
        run: Callable[[], Awaitable[Any]],
        quorum: str | None = None,
        on_conflict: Callable[[str], Any] | None = None,
    ) -> Singleton:
        """Run `await run()` on exactly one connected member; see the module docstring.

        `on_conflict(winner)` is called here when this node's running instance is stopped
        because member `winner` owns it now (after a heal, or a handover), so the application
        can merge its state into the winner's.
        """
        if not callable(run):
            raise TypeError(f"run must be an async function, got {run!r}")
        self.core.declare_singleton(name, quorum)
        self._runs[name] = run
        self._on_conflict[name] = on_conflict
        self._evaluate()
        return Singleton(self, name)

    def spread(self, name: str, count: int, run: Callable[[int], Awaitable[Any]]) -> Spread:
        """Run workers `await run(index)` for index in range(count), spread over the members."""
        if not callable(run):
            raise TypeError(f"run must be an async function, got {run!r}")
        self.core.declare_spread(name, count)
        self._runs[name] = run
        self._evaluate()
        return Spread(self, name)

    def on_event(self, event: Event) -> None:
        """Membership changes move singletons and workers."""
        if isinstance(event, MemberUp | MemberSuspect | MemberDown | MemberLeft):
            self._evaluate()

    def close(self) -> None:
        """Stop every local instance and the timer."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for name in list(self._runs):
            self._forget(name)

    def _forget(self, name: str) -> None:
        self._apply(self.core.forget(name), conflicts=False)
        self._runs.pop(name, None)
        self._on_conflict.pop(name, None)

    def _evaluate(self) -> None:
        if self._closed:
            return
        self._apply(self.core.evaluate(self._clock()))
        if self._timer is None and (self.core.singletons or self.core.spreads):
            self._timer = self._loop.call_later(self._interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._evaluate()

    def _apply(self, transitions: list[Transition], conflicts: bool = True) -> None:
        for transition in transitions:
            key = (transition.name, transition.index)
            if transition.action == "start":
                run = self._runs[transition.name]
                coroutine = run() if transition.index is None else run(transition.index)
                self.counters["started"] += 1
                task = self._loop.create_task(self._guard(transition, coroutine))
                self._tasks[key] = task
                log.info("starting %s on %s", _label(transition), self.core.node_id)
                continue
            stopped = self._tasks.pop(key, None)
            if stopped is not None:
                stopped.cancel()
                self.counters["stopped"] += 1
                log.info("stopping %s on %s", _label(transition), self.core.node_id)
            hook = self._on_conflict.get(transition.name)
            if conflicts and hook is not None and transition.winner is not None:
                self._loop.create_task(_call_hook(hook, transition.winner, transition.name))

    async def _guard(self, transition: Transition, coroutine: Awaitable[Any]) -> None:
        try:
            await coroutine
        except asyncio.CancelledError:
            raise
        except Exception:  # the application's function failed: log, retry after a pause
            self.counters["failed"] += 1
            log.exception("%s failed", _label(transition))
            if transition.index is None:
                self.core.failed(self._clock(), transition.name)
        finally:
            key = (transition.name, transition.index)
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]


async def _call_hook(hook: Callable[[str], Any], winner: str, name: str) -> None:
    try:
        result = hook(winner)
        if inspect.isawaitable(result):
            await result
    except Exception:  # an application callback must not stop the node
        log.exception("on_conflict of singleton %r failed", name)


def _label(transition: Transition) -> str:
    if transition.index is None:
        return f"singleton {transition.name!r}"
    return f"worker {transition.index} of {transition.name!r}"
