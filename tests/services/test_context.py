"""Context propagation: contextvars, W3C traceparent, OpenTelemetry, across real nodes."""

from __future__ import annotations

import asyncio
import re

import pytest
from services_real import eventually, real_cluster, registered

from foundation_p2p import context as ctx
from foundation_p2p.context import context

pytestmark = pytest.mark.timeout(60)
TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")


def test_values_nest_and_reset_and_a_trace_starts():
    assert ctx.current() == {} and ctx.trace_id() is None and ctx.inject() == {}
    with context(request_id="r-1", user="ada"):
        trace = ctx.trace_id()
        assert trace is not None and len(trace) == 32
        with context(user="bob", attempt=2):
            assert ctx.current() == {"request_id": "r-1", "user": "bob", "attempt": 2}
            assert ctx.trace_id() == trace  # nested: same trace
        assert ctx.current() == {"request_id": "r-1", "user": "ada"}
        headers = ctx.inject()
        assert headers["ctx"] == {"request_id": "r-1", "user": "ada"}
        assert TRACEPARENT.match(headers["traceparent"])
        assert headers["traceparent"].split("-")[1] == trace
        assert ctx.inject()["traceparent"] != headers["traceparent"]  # a new span each time
    assert ctx.current() == {} and ctx.trace_id() is None


def test_unserializable_values_and_malformed_headers():
    with pytest.raises(TypeError):
        with context(when=object()):
            pass
    assert ctx.current() == {}
    for headers in (
        {"traceparent": "garbage", "ctx": "not a map"},
        {"traceparent": "00-" + "0" * 32 + "-" + "1" * 16 + "-01", "ctx": {1: "x"}},
        {"traceparent": 7},
    ):
        import contextvars

        copy = contextvars.copy_context()
        copy.run(ctx.attach, headers)
        assert copy.run(ctx.trace_id) is None and copy.run(ctx.current) == {}


def test_opentelemetry_spans_are_injected_and_extracted():
    trace = pytest.importorskip("opentelemetry.trace")
    from opentelemetry import context as otel_context

    span_context = trace.SpanContext(
        trace_id=0x1234, span_id=0x99, is_remote=False, trace_flags=trace.TraceFlags(1)
    )
    token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(span_context)))
    try:
        with context(user="ada"):
            headers = ctx.inject()
            assert headers["traceparent"] == f"00-{0x1234:032x}-{0x99:016x}-01"
            assert ctx.trace_id() == f"{0x1234:032x}"
    finally:
        otel_context.detach(token)
    import contextvars

    copy = contextvars.copy_context()
    copy.run(ctx.attach, headers)
    extracted = copy.run(lambda: trace.get_current_span().get_span_context())
    assert (extracted.trace_id, extracted.span_id) == (0x1234, 0x99)


async def test_context_flows_through_call_send_and_publish_on_other_nodes():
    async with real_cluster(3) as nodes:
        seen: list[tuple[str, dict[str, object], str | None, str | None]] = []

        async def handler(request: str) -> dict[str, object]:
            seen.append((request, ctx.current(), ctx.trace_id(), ctx.parent_span_id()))
            # and onwards: a handler's own call carries the same context
            if request == "call":
                return await nodes[1].call("leaf", "nested")
            return {}

        def leaf(request: str) -> dict[str, object]:
            seen.append((request, ctx.current(), ctx.trace_id(), ctx.parent_span_id()))
            return ctx.current()

        await nodes[1].registry.register("front", handler)
        await nodes[2].registry.register("leaf", leaf)
        nodes[2].pubsub.subscribe("news", lambda message: handler(message))
        await registered(nodes, "front")
        await registered(nodes, "leaf")
        await registered(nodes, "sys.pubsub/news")
        with context(request_id="r-7", user="ada"):
            trace = ctx.trace_id()
            assert await nodes[0].call("front", "call") == {"request_id": "r-7", "user": "ada"}
            await nodes[0].send("front", "send")
            await nodes[0].pubsub.publish("news", "publish")
        await eventually(lambda: len(seen) == 4)
        assert {s[0] for s in seen} == {"call", "nested", "send", "publish"}
        for _, values, trace_id, parent in seen:
            assert values == {"request_id": "r-7", "user": "ada"}
            assert trace_id == trace and parent is not None
        # the caller's context did not leak into the node's other work
        assert ctx.current() == {}
        await asyncio.sleep(0)
