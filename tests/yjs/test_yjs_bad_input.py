"""Bad input at /yjs/<name>: wrong tokens, garbage and text frames, an oversize message, too
many clients. Each is refused with a close code or an HTTP status, a log line and a counter;
the other clients of the node keep working. Also: awareness is relayed and echoed."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from pycrdt import Awareness, Doc, create_awareness_message, create_update_message
from yjs_support import eventually_true

from foundation_p2p.runtime.yjs import CLOSE_MALFORMED, LIMITS, ROOMS, client_token
from transport import generate_key

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def url(node: Any, name: str = "line-3", token: str | None = None) -> str:
    query = f"?token={token}" if token is not None else ""
    return f"ws://{node.http_address}/yjs/{name}{query}"


async def next_binary(
    ws: aiohttp.ClientWebSocketResponse, predicate: Callable[[bytes], bool], timeout: float = 5.0
) -> bytes:
    """The next binary message satisfying `predicate` (bounded)."""
    while True:
        message = await ws.receive(timeout=timeout)
        if message.type != aiohttp.WSMsgType.BINARY:
            raise AssertionError(f"socket ended: {message}")
        if predicate(message.data):
            return bytes(message.data)


async def close_code(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> int | None:
    """Read until the server closes the socket (bounded); its close code."""
    while True:
        message = await ws.receive(timeout=timeout)
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return ws.close_code
        if message.type == aiohttp.WSMsgType.ERROR:
            raise AssertionError(f"socket error: {message}")


def is_update(data: bytes) -> bool:
    return data[:2] == b"\x00\x02"


def awareness_update(client_id: int, state: dict[str, Any] | None) -> bytes:
    doc: Doc[Any] = Doc(client_id=client_id)
    awareness = Awareness(doc)
    awareness.set_local_state(state)
    return awareness.encode_awareness_update([client_id])


def a_real_update() -> bytes:
    from pycrdt import Map

    doc: Doc[Any] = Doc()
    doc.get("data", type=Map)["k"] = "v"
    return bytes(doc.get_update())


GARBAGE = [
    pytest.param(b"\xff\xff\xff", id="unterminated-number"),
    pytest.param(b"\x00\x02\x05ab", id="length-past-the-end"),
    pytest.param(b"\x07\x00", id="unknown-message-type"),
    pytest.param(b"\x00\x09\x00", id="unknown-sync-step"),
    pytest.param(b"\x00\x02\x02\x00\x00\xff", id="trailing-bytes"),
    pytest.param(create_update_message(b"\x01\x01\xff\xff\xff\x01\x00garbage"), id="bad-update"),
    pytest.param(b"\x00\x00\x03\xff\xff\x7f", id="bad-state-vector"),
    pytest.param(create_awareness_message(b"\x01\x05\x01\x03{x}"), id="bad-awareness-json"),
    pytest.param(b"\xff" * 12 + b"\x00", id="number-over-64-bits"),
]


@pytest.mark.parametrize("frame", GARBAGE)
async def test_a_garbage_frame_closes_that_socket_only(make_nodes, session, caplog, frame):
    (n0,) = await make_nodes(1)
    state = n0.shared_state("line-3")
    counters = n0._require_engine().counters
    good = await session.ws_connect(url(n0))
    bad = await session.ws_connect(url(n0))
    before = state.to_dict()
    with caplog.at_level(logging.WARNING, "foundation_p2p.yjs"):
        await bad.send_bytes(frame)
        assert await close_code(bad) == CLOSE_MALFORMED
    assert counters["refused.yjs_malformed"] == 1
    assert "closing it" in caplog.text
    assert state.to_dict() == before
    state["after"] = 1  # the node and its other client go on
    await next_binary(good, is_update)
    await good.send_bytes(create_update_message(a_real_update()))
    await eventually_true(lambda: state.get("k") == "v")
    await good.close()


async def test_a_text_frame_closes_that_socket(make_nodes, session):
    (n0,) = await make_nodes(1)
    ws = await session.ws_connect(url(n0))
    await ws.send_str("hello")
    assert await close_code(ws) == CLOSE_MALFORMED
    assert n0._require_engine().counters["refused.yjs_malformed"] == 1


async def test_an_oversize_message_closes_that_socket_and_applies_nothing(make_nodes, session):
    (n0,) = await make_nodes(1)
    n0._http.app[LIMITS].max_message_bytes = 1000
    ws = await session.ws_connect(url(n0))
    doc: Doc[Any] = Doc()
    from pycrdt import Map

    doc.get("data", type=Map)["big"] = "x" * 2000
    await ws.send_bytes(create_update_message(bytes(doc.get_update())))
    assert await close_code(ws) == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    assert n0._require_engine().counters["refused.yjs_oversize"] == 1
    assert "big" not in n0.shared_state("line-3")


async def test_more_clients_than_the_limit_are_refused(make_nodes, session):
    (n0,) = await make_nodes(1)
    n0._http.app[LIMITS].max_clients_per_state = 2
    first, second = await session.ws_connect(url(n0)), await session.ws_connect(url(n0))
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(url(n0))
    assert refused.value.status == 503
    assert n0._require_engine().counters["refused.yjs_clients"] == 1
    other = await session.ws_connect(url(n0, "another-state"))  # the limit is per state
    await first.close()
    await eventually_true(lambda: len(n0._http.app[ROOMS]["line-3"].clients) == 1)
    third = await session.ws_connect(url(n0))
    for ws in (second, other, third):
        await ws.close()


@pytest.mark.parametrize("token", [None, "", "0" * 64, "wrong", "é"])
async def test_a_missing_or_wrong_token_is_refused(make_nodes, session, caplog, token):
    key = generate_key()
    (n0,) = await make_nodes(1, key=key)
    with caplog.at_level(logging.WARNING, "foundation_p2p.yjs"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url(n0, token=token))
    assert refused.value.status == 401
    assert n0._require_engine().counters["refused.yjs_token"] == 1
    assert "missing or wrong token" in caplog.text
    # a read-only token of another state is wrong for this one; the write token works
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await session.ws_connect(url(n0, token=client_token(key, "other")))
    header = {"Authorization": f"Bearer {client_token(key)}"}
    ws = await session.ws_connect(url(n0), headers=header)
    await ws.close()


async def test_awareness_is_relayed_to_every_client_and_removed_when_one_leaves(
    make_nodes, session
):
    (n0,) = await make_nodes(1)
    a, b = await session.ws_connect(url(n0)), await session.ws_connect(url(n0))
    hello = create_awareness_message(awareness_update(4242, {"user": "ada"}))
    await a.send_bytes(hello)
    assert await next_binary(a, lambda d: d[0] == 1) == hello  # echoed to the sender
    assert await next_binary(b, lambda d: d[0] == 1) == hello
    late = await session.ws_connect(url(n0))  # a newcomer is told who is here
    greeting = await next_binary(late, lambda d: d[0] == 1)
    assert b'"user":"ada"' in greeting
    await a.close()
    gone = await next_binary(b, lambda d: d[0] == 1)
    assert gone.endswith(b"null")  # the state of client 4242 removed
    await b.close()
    await late.close()


async def test_a_plain_http_request_is_refused_and_leaves_nothing_behind(make_nodes, session):
    (n0,) = await make_nodes(1)
    async with session.get(f"http://{n0.http_address}/yjs/line-3") as response:
        assert response.status == 400
    assert n0._http.app[ROOMS] == {}
