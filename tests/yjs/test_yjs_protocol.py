"""The y-websocket protocol at /yjs/<name>, driven byte by byte: the greeting, sync step 2 for a
client's state vector, a client's update as a local write that replicates, and a client that
cannot keep up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pycrdt import (
    Awareness,
    Doc,
    Map,
    create_awareness_message,
    create_update_message,
    read_message,
)
from yjs_support import eventually_true

from foundation_p2p.runtime.yjs import CLOSE_SLOW, LIMITS
from foundation_p2p.services.state import Change

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def url(node: Any, name: str = "line-3") -> str:
    return f"ws://{node.http_address}/yjs/{name}"


async def binary(ws: aiohttp.ClientWebSocketResponse) -> bytes:
    message = await ws.receive(timeout=5.0)
    assert message.type == aiohttp.WSMsgType.BINARY, message
    return bytes(message.data)


async def test_a_client_is_greeted_and_synced_and_its_update_is_a_local_write(make_nodes, session):
    n0, n1 = await make_nodes(2)
    s0, s1 = n0.shared_state("line-3"), n1.shared_state("line-3")
    s0["here"] = "before"
    seen: list[Change] = []
    s0.observe(seen.append)
    ws = await session.ws_connect(url(n0))
    greeting = await binary(ws)
    assert greeting[:2] == b"\x00\x00"  # sync step 1: the node's state vector

    await ws.send_bytes(b"\x00\x00\x01\x00")  # our step 1: an empty state vector
    step2 = await binary(ws)
    assert step2[:2] == b"\x00\x01"
    client: Doc[Any] = Doc()
    client.apply_update(read_message(step2[2:]))
    assert client.get("data", type=Map)["here"] == "before"

    writes = n0._require_engine().write_seq
    before = client.get_state()
    client.get("data", type=Map)["from-client"] = 7
    await ws.send_bytes(create_update_message(client.get_update(before)))
    await eventually_true(lambda: s1.get("from-client") == 7)  # replicated to the other node
    assert s0["from-client"] == 7 and type(s0["from-client"]) is int
    assert n0._require_engine().write_seq == writes + 1
    assert Change(frozenset({"from-client"}), "local") in seen

    s1["from-python"] = [1, 2]  # a cluster change reaches the client as an update
    while True:
        message = await binary(ws)
        if message[:2] == b"\x00\x02":
            client.apply_update(read_message(message[2:]))
            if client.get("data", type=Map).get("from-python") is not None:
                break
    assert client.get("data", type=Map)["from-python"] == [1.0, 2.0]  # pycrdt: numbers as floats
    await ws.close()


async def test_a_client_that_cannot_keep_up_is_closed(make_nodes, session):
    (n0,) = await make_nodes(1)
    present = await session.ws_connect(url(n0))
    doc: Doc[Any] = Doc(client_id=77)
    awareness = Awareness(doc)
    awareness.set_local_state({"user": "ada"})
    await present.send_bytes(create_awareness_message(awareness.encode_awareness_update([77])))
    await binary(present)  # greeting
    await binary(present)  # the echo: the node now knows someone is here
    n0._http.app[LIMITS].max_queued_messages = 1
    late = await session.ws_connect(url(n0))  # greeting + who is here: two messages, room for one
    while True:
        message = await late.receive(timeout=5.0)
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            break
    assert late.close_code == CLOSE_SLOW
    assert n0._require_engine().counters["refused.yjs_slow"] == 1
    await present.close()


async def test_stopping_the_node_closes_its_clients_at_once(make_nodes, session):
    (n0,) = await make_nodes(1)
    ws = await session.ws_connect(url(n0))
    await binary(ws)  # greeting
    started = asyncio.get_running_loop().time()
    await n0.stop(leave=False)
    assert asyncio.get_running_loop().time() - started < 5.0
    message = await ws.receive(timeout=5.0)
    assert message.type == aiohttp.WSMsgType.CLOSE
    assert message.data == aiohttp.WSCloseCode.GOING_AWAY  # y-websocket will reconnect


async def test_what_a_client_writes_into_a_counter_that_is_not_an_int_is_not_counted(
    make_nodes, session
):
    (n0,) = await make_nodes(1)
    state = n0.shared_state("line-3")
    state.counter("visits").increment(2)
    ws = await session.ws_connect(url(n0))
    client: Doc[Any] = Doc()
    counter = client.get("counter:visits", type=Map)
    counter["browser"] = 3  # a JS client adding to an entry of its own
    counter["odd"] = "not a number"
    await ws.send_bytes(create_update_message(client.get_update()))
    await eventually_true(lambda: state.counter("visits").value == 5)
    await ws.close()
