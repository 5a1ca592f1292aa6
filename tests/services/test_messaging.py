"""Messaging: pub/sub, send and call between real nodes; the AppMessage wire path."""

from __future__ import annotations

import asyncio

import msgpack
import pytest
from services_real import eventually, real_cluster, registered

from foundation_p2p.engine import AppMessage, AppReceived, RemoteProtocolError, decode, encode
from foundation_p2p.engine.codec import PROTOCOL_VERSION
from foundation_p2p.engine.messages import APP_PUBLISH, APP_REQUEST
from foundation_p2p.services.messaging import RemoteError
from foundation_p2p.services.registry import ServiceNotFound
from simulations.cluster import SimCluster

pytestmark = pytest.mark.timeout(60)


def test_app_messages_round_trip_the_codec_and_bad_ones_are_refused():
    message = AppMessage(APP_REQUEST, "svc", b"\x81\xa1a\x01", "n1~1/2", 7, 500, {"ctx": {"u": 1}})
    assert decode(encode(message)) == message
    for fields in (
        [9, "svc", b"", "", 0, 0, {}],  # unknown kind
        [APP_REQUEST, "", b"", "", 0, 0, {}],  # empty channel
        [APP_REQUEST, "svc", "not bytes", "", 0, 0, {}],
        [APP_REQUEST, "svc", b"", "", -1, 0, {}],
        [APP_REQUEST, "svc", b"", "", 0, 0, {1: "x"}],
        [APP_REQUEST, "svc", b""],
    ):
        with pytest.raises(RemoteProtocolError):
            decode(msgpack.packb([PROTOCOL_VERSION, 8, *fields]))


def test_the_simulator_carries_app_messages_as_engine_events():
    sim = SimCluster(2, seed=1)
    sim.run_for(2.0)
    message = AppMessage(APP_PUBLISH, "alerts", msgpack.packb({"t": 1}))
    sim._process(sim.nodes["n0"], sim.nodes["n0"].engine.send_app("n1", message))
    sim.run_for(0.1)
    received = [e for _, e in sim.nodes["n1"].events if isinstance(e, AppReceived)]
    assert received == [AppReceived("n0", message)]


async def test_call_and_send_reach_a_handler_on_another_node():
    async with real_cluster(3) as nodes:
        got: list[object] = []

        async def thermo(request: dict[str, object]) -> dict[str, object]:
            if request.get("op") == "read":
                return {"celsius": 21.5, "on": "n1"}
            got.append(request)
            return {}

        await nodes[1].registry.register("thermo", thermo)
        await registered(nodes, "thermo")
        assert await nodes[0].call("thermo", {"op": "read"}) == {"celsius": 21.5, "on": "n1"}
        await nodes[2].send("thermo", {"op": "set", "to": 19})
        await eventually(lambda: got == [{"op": "set", "to": 19}])
        # a plain function is a handler too, and a local instance answers without a hop
        await nodes[0].registry.register("double", lambda x: x * 2)
        assert await nodes[0].call("double", 21) == 42


async def test_a_handlers_exception_reaches_the_caller_and_the_node_keeps_serving():
    async with real_cluster(2) as nodes:

        def fragile(request: int) -> int:
            if request < 0:
                raise ValueError(f"negative: {request}")
            return request

        await nodes[1].registry.register("fragile", fragile)
        await registered(nodes, "fragile")
        with pytest.raises(RemoteError) as caught:
            await nodes[0].call("fragile", -3)
        assert (caught.value.type, caught.value.message) == ("ValueError", "negative: -3")
        assert await nodes[0].call("fragile", 3) == 3
        with pytest.raises(RemoteError, match="TypeError"):  # a reply that cannot be sent
            await nodes[1].registry.register("odd", lambda _: object())
            await registered(nodes, "odd")
            await nodes[0].call("odd", 1)


async def test_unknown_service_hanging_handler_and_unserializable_message():
    async with real_cluster(2) as nodes:
        with pytest.raises(ServiceNotFound):
            await nodes[0].call("nobody", {})
        with pytest.raises(ServiceNotFound):
            await nodes[0].send("nobody", {})

        async def hang(request: object) -> object:
            await asyncio.Event().wait()
            return None

        await nodes[1].registry.register("hang", hang)
        await registered(nodes, "hang")
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await nodes[0].call("hang", {}, timeout=0.2, retries=1)
        assert asyncio.get_running_loop().time() - started < 2.0
        # the callee cuts the hung handler off after the caller's timeout
        services = nodes[1]._cluster_services().messaging
        await eventually(lambda: services.counters["handler.timeout"] == 2)
        with pytest.raises(TypeError):
            await nodes[0].call("hang", {"when": object()})
        with pytest.raises(TypeError):
            await nodes[0].pubsub.publish("t", {1, 2})


async def test_a_call_retries_on_another_instance_after_a_timeout_or_a_dead_node():
    async with real_cluster(3) as nodes:

        async def hang(request: object) -> str:
            await asyncio.Event().wait()
            return "never"

        await nodes[1].registry.register("svc", hang)
        await nodes[2].registry.register("svc", lambda request: "n2")
        await registered(nodes, "svc", 2)
        for _ in range(4):  # whichever comes first, the answer comes from n2
            assert await nodes[0].call("svc", {}, timeout=1.0, retries=1) == "n2"
        with pytest.raises(TimeoutError):
            for _ in range(4):
                await nodes[0].call("svc", {}, timeout=0.2, retries=0)

        # a node that dies while a call waits on it: the call moves on without its timeout
        await nodes[1].registry.register("slow", hang)
        await eventually(lambda: len(nodes[0].registry.lookup("slow")) == 1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        task = asyncio.create_task(nodes[0].call("slow", {}, timeout=8.0, retries=1))
        await nodes[2].registry.register("slow", lambda request: "n2")
        await registered(nodes, "slow", 2)
        await nodes[1].stop(leave=False)
        assert await asyncio.wait_for(task, 7.0) == "n2"
        assert loop.time() - started < 7.0


async def test_pubsub_delivers_once_to_every_subscriber_in_publisher_order():
    async with real_cluster(3) as nodes:
        got: dict[str, list[int]] = {"n0": [], "n1": [], "n2": []}
        async_got: list[int] = []

        async def slow_subscriber(message: int) -> None:
            async_got.append(message)

        handles = [n.pubsub.subscribe("ticks", got[n.node_id].append) for n in nodes]
        nodes[2].pubsub.subscribe("ticks", slow_subscriber)
        await registered(nodes, "sys.pubsub/ticks", 3)
        for i in range(200):
            await nodes[0].pubsub.publish("ticks", i)
        await eventually(lambda: all(len(v) == 200 for v in got.values()) and len(async_got) == 200)
        assert all(v == list(range(200)) for v in got.values())
        assert sorted(async_got) == list(range(200))
        handles[1].close()
        handles[1].close()
        await registered(nodes, "sys.pubsub/ticks", 2)
        assert await nodes[0].pubsub.publish("ticks", 999) == 2
        await eventually(lambda: got["n2"][-1] == 999 and got["n0"][-1] == 999)
        assert got["n1"][-1] == 199


async def test_a_raising_subscriber_is_logged_and_counted_and_others_still_get_the_message():
    async with real_cluster(2) as nodes:
        got: list[str] = []

        def broken(message: str) -> None:
            raise RuntimeError("subscriber bug")

        nodes[1].pubsub.subscribe("alerts", broken)
        nodes[1].pubsub.subscribe("alerts", got.append)
        await registered(nodes, "sys.pubsub/alerts")
        await nodes[0].pubsub.publish("alerts", "fire")
        await eventually(lambda: got == ["fire"])
        assert nodes[1]._cluster_services().messaging.counters["callback.raised"] == 1


async def test_malformed_batches_from_a_peer_are_counted_and_the_good_parts_delivered():
    from foundation_p2p.engine.messages import APP_BATCH

    async with real_cluster(1) as (node,):
        got: list[object] = []
        node.pubsub.subscribe("t", got.append)
        messaging = node._cluster_services().messaging
        good = [APP_PUBLISH, "t", msgpack.packb("ok"), "", 0, 0, {}]
        nested = [APP_BATCH, "sys.batch", msgpack.packb([good]), "", 0, 0, {}]
        for payload in (
            b"\xc1",  # not msgpack
            msgpack.packb({"not": "a list"}),
            msgpack.packb(
                [good, ["junk"], nested, [APP_PUBLISH, "t", b"\xc1", "", 0, 0, {}], good]
            ),
        ):
            messaging.on_event(AppReceived("peer", AppMessage(APP_BATCH, "sys.batch", payload)))
        assert got == ["ok", "ok"]
        assert messaging.counters["refused.payload"] == 5
