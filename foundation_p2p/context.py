"""Context that travels with messages: `with context(request_id=..., user=...):`.

Values live in `contextvars`, so they follow asyncio tasks. `send`, `call` and `publish` carry
them to handlers on other nodes together with a W3C `traceparent` header. When
`opentelemetry-api` is installed and a span is active, the span's context is injected into
outgoing messages and extracted around handlers, so traces join up across nodes.
"""

from __future__ import annotations

import contextvars
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

import msgpack

from crdts import normalize_value

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
VALUES = "ctx"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_EMPTY: Mapping[str, Any] = MappingProxyType({})

_values: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "foundation_p2p.context", default=_EMPTY
)
_trace: contextvars.ContextVar[tuple[str, str, str] | None] = contextvars.ContextVar(
    "foundation_p2p.trace", default=None
)
"""(trace id, parent span id, flags) of the current trace, when not delegated to OpenTelemetry."""

_otel_context: Any = None
_otel_propagate: Any = None
_otel_trace: Any = None
try:  # optional: opentelemetry-api
    from opentelemetry import context as _otel_context
    from opentelemetry import propagate as _otel_propagate
    from opentelemetry import trace as _otel_trace
except ImportError:  # pragma: no cover - exercised when the package is absent
    pass


@contextmanager
def context(**values: Any) -> Iterator[Mapping[str, Any]]:
    """Add `values` to the current context for the body of the `with` (nested ones merge).

    Values must be msgpack-able (they cross the network); TypeError otherwise. A trace is
    started if none is active.
    """
    merged = dict(_values.get())
    for key, value in values.items():
        merged[key] = _checked(key, value)
    values_token = _values.set(MappingProxyType(merged))
    trace_token = None
    if _trace.get() is None and not _otel_span_active():
        trace_token = _trace.set((secrets.token_hex(16), secrets.token_hex(8), "01"))
    try:
        yield _values.get()
    finally:
        if trace_token is not None:
            _trace.reset(trace_token)
        _values.reset(values_token)


def current() -> dict[str, Any]:
    """A copy of the current context's values."""
    return dict(_values.get())


def get(key: str, default: Any = None) -> Any:
    """One value of the current context."""
    return _values.get().get(key, default)


def trace_id() -> str | None:
    """The current W3C trace id (32 hex digits), or None outside any trace."""
    if _otel_span_active():
        return f"{_otel_trace.get_current_span().get_span_context().trace_id:032x}"
    trace = _trace.get()
    return trace[0] if trace else None


def inject(headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """Headers for an outgoing message: the context's values and a `traceparent` naming a new
    span under the current one (nothing is added outside a context or trace)."""
    headers = {} if headers is None else headers
    values = _values.get()
    if values:
        headers[VALUES] = dict(values)
    if _otel_span_active():
        carrier: dict[str, str] = {}
        _otel_propagate.inject(carrier)
        headers.update(carrier)
        return headers
    trace = _trace.get()
    if trace is not None:
        headers[TRACEPARENT] = f"00-{trace[0]}-{secrets.token_hex(8)}-{trace[2]}"
    return headers


def attach(headers: Mapping[str, Any]) -> None:
    """Make the context carried by `headers` current (call inside the handler's own context).

    A malformed header is ignored: a peer's bad context must not stop its message.
    """
    values = headers.get(VALUES)
    if isinstance(values, dict) and all(type(k) is str for k in values):
        _values.set(MappingProxyType(values))
    parent = headers.get(TRACEPARENT)
    match = _TRACEPARENT.match(parent) if type(parent) is str else None
    if match is None:
        return
    trace, span, flags = match.groups()
    if trace == "0" * 32 or span == "0" * 16:
        return
    _trace.set((trace, span, flags))
    if _otel_propagate is not None:
        carrier = {k: v for k, v in headers.items() if k in (TRACEPARENT, TRACESTATE)}
        _otel_context.attach(_otel_propagate.extract(carrier))


def parent_span_id() -> str | None:
    """The span id the current handler's caller named in its traceparent (None if none)."""
    trace = _trace.get()
    return trace[1] if trace else None


def _otel_span_active() -> bool:
    if _otel_trace is None or not _otel_context.get_current():  # an empty Context: no span
        return False
    return bool(_otel_trace.get_current_span().get_span_context().is_valid)


def _checked(key: str, value: Any) -> Any:
    try:
        value = normalize_value(value)
        msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"context value {key}={value!r} cannot cross the network: {exc}") from None
    return value
