"""Telemetry events, in the spirit of Elixir's `:telemetry`.

An event has a name (a tuple of strings; a dotted string is accepted wherever a name is), a
dict of numeric measurements and a dict of metadata. Code that has something to report calls
`execute(name, measurements, metadata)`; code that wants to know calls `attach(name, handler)`.
Handlers run synchronously on the caller's thread (for a node: its event-loop thread), so they
must be quick. A handler that raises is detached and logged; the node carries on.

With no handler attached, `execute` is one dict lookup. Callers that would have to compute
their measurements first may ask `active(name)` before doing so.

Every event the library emits carries `node` (the emitting node's id) in its metadata, so
several nodes in one process can share handlers. The names, with their measurements and
metadata, are listed in `EVENTS` and in docs/guides/observability.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger("foundation_p2p.telemetry")

EventName = tuple[str, ...]
Handler = Callable[[EventName, Mapping[str, float], Mapping[str, Any]], object]

MEMBER_UP: EventName = ("foundation_p2p", "member", "up")
MEMBER_SUSPECT: EventName = ("foundation_p2p", "member", "suspect")
MEMBER_DOWN: EventName = ("foundation_p2p", "member", "down")
MEMBER_LEFT: EventName = ("foundation_p2p", "member", "left")
REPLICA_MERGED: EventName = ("foundation_p2p", "replica", "merged")
ANTI_ENTROPY_ROUND: EventName = ("foundation_p2p", "anti_entropy", "round")
FRAME_REFUSED: EventName = ("foundation_p2p", "frame", "refused")
SINGLETON_MOVED: EventName = ("foundation_p2p", "singleton", "moved")
CACHE_HIT: EventName = ("foundation_p2p", "cache", "hit")
CACHE_MISS: EventName = ("foundation_p2p", "cache", "miss")

# name -> (measurements, metadata): what each event carries (beside metadata["node"]).
EVENTS: dict[EventName, tuple[str, str]] = {
    MEMBER_UP: ("live_members", "member, address"),
    MEMBER_SUSPECT: ("live_members", "member"),
    MEMBER_DOWN: ("live_members", "member"),
    MEMBER_LEFT: ("live_members", "member"),
    REPLICA_MERGED: ("bytes", "replica, origin (the peer the delta came from)"),
    ANTI_ENTROPY_ROUND: ("replicas, bytes (of the opening digest message)", "peer"),
    FRAME_REFUSED: ("count", "reason, src (empty if unknown), detail"),
    SINGLETON_MOVED: ("count", "name, from_node, to_node"),
    CACHE_HIT: ("count", "key"),
    CACHE_MISS: ("count", "key"),
}

_lock = threading.Lock()
# copy-on-write: readers take the tuple without the lock
_handlers: dict[EventName, tuple[Handler, ...]] = {}


def event_name(name: EventName | str) -> EventName:
    """`name` as a tuple: "foundation_p2p.member.up" -> ("foundation_p2p", "member", "up")."""
    if isinstance(name, str):
        parts = tuple(name.split("."))
    elif isinstance(name, tuple):
        parts = name
    else:
        raise TypeError(f"an event name is a tuple of str or a dotted str, got {name!r}")
    if not parts or not all(isinstance(p, str) and p for p in parts):
        raise ValueError(f"an event name needs non-empty str parts, got {name!r}")
    return parts


def attach(name: EventName | str, handler: Handler) -> Callable[[], bool]:
    """Call `handler(name, measurements, metadata)` on every `name` event; returns a detach
    function (the same as `detach(name, handler)`)."""
    if not callable(handler):
        raise TypeError(f"handler must be callable, got {handler!r}")
    key = event_name(name)
    with _lock:
        current = _handlers.get(key, ())
        if handler not in current:
            _handlers[key] = (*current, handler)
    return lambda: detach(key, handler)


def attach_many(names: Iterable[EventName | str], handler: Handler) -> Callable[[], None]:
    """Attach `handler` to each of `names`; returns a function detaching it from all."""
    detachers = [attach(name, handler) for name in names]

    def detach_all() -> None:
        for detach_one in detachers:
            detach_one()

    return detach_all


def detach(name: EventName | str, handler: Handler) -> bool:
    """Stop calling `handler` for `name`; False if it was not attached."""
    key = event_name(name)
    with _lock:
        current = _handlers.get(key, ())
        if handler not in current:
            return False
        remaining = tuple(h for h in current if h != handler)
        if remaining:
            _handlers[key] = remaining
        else:
            del _handlers[key]
    return True


def handlers(name: EventName | str) -> tuple[Handler, ...]:
    """The handlers attached to `name`."""
    return _handlers.get(event_name(name), ())


def active(name: EventName) -> bool:
    """Whether any handler listens to `name` (a tuple): skip computing measurements if not."""
    return name in _handlers


def execute(
    name: EventName | str,
    measurements: Mapping[str, float],
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Report an event to every handler attached to `name`."""
    if not _handlers:
        return
    key = name if isinstance(name, tuple) else event_name(name)
    attached = _handlers.get(key)
    if not attached:
        return
    meta: Mapping[str, Any] = metadata if metadata is not None else {}
    for handler in attached:
        try:
            handler(key, measurements, meta)
        except Exception:  # a failing handler must not break the node that reports
            detach(key, handler)
            log.exception(
                "telemetry handler %r failed on %s and was detached", handler, ".".join(key)
            )
