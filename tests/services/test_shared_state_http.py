"""The HTTP state API serves SharedState: Python and HTTP see the same data (one node, in this
process, loopback)."""

from __future__ import annotations

import aiohttp
import pytest

from crdts import LWWMap
from foundation_p2p.node import Node

pytestmark = pytest.mark.timeout(60)


async def test_python_and_http_see_the_same_shared_state() -> None:
    async with Node(
        cluster="web", listen="127.0.0.1:0", discovery=None, http="127.0.0.1:0"
    ) as node:
        base = f"http://{node.http_address}"
        s = node.shared_state("line-3")
        s["blob"] = b"\x00\x01"
        s["ints"] = {1: "one", b"k": [2**40]}
        async with aiohttp.ClientSession() as http:
            async with http.put(f"{base}/state/line-3/temperature", json=21.5) as reply:
                assert reply.status == 200
            assert s["temperature"] == 21.5
            async with http.get(f"{base}/state/line-3") as reply:
                assert await reply.json() == {
                    "blob": {"$bytes": "AAE="},
                    "ints": {"1": "one", "$bytes:aw==": [2**40]},
                    "temperature": 21.5,
                }
            async with http.get(f"{base}/state/line-3/temperature") as reply:
                assert await reply.json() == {"key": "temperature", "value": 21.5}
            async with http.delete(f"{base}/state/line-3/temperature") as reply:
                assert reply.status == 200
            assert "temperature" not in s
            async with http.get(f"{base}/health") as reply:
                sizes = (await reply.json())["shared_state_bytes"]
                assert sizes["line-3"] == s.size_bytes() > 0
            # a majority of one (this node) is reached at once
            async with http.put(f"{base}/state/line-3/k?write=majority", json=[1]) as reply:
                assert reply.status == 200
            assert s["k"] == [1]


async def test_bad_http_writes_change_nothing() -> None:
    async with Node(
        cluster="web", listen="127.0.0.1:0", discovery=None, http="127.0.0.1:0"
    ) as node:
        base = f"http://{node.http_address}"
        s = node.shared_state("s")
        s["kept"] = 1
        before = s.size_bytes()
        async with aiohttp.ClientSession() as http:
            for url, body in [
                (f"{base}/state/s/k", b"{not json"),
                (f"{base}/state/s/k", b"18446744073709551616"),  # beyond int64
                (f"{base}/state/s/k?write=quorum", b"1"),
                (f"{base}/state/s/k?timeout=-1", b"1"),
            ]:
                async with http.put(url, data=body) as reply:
                    assert reply.status == 400, url
                    assert "error" in await reply.json()
            async with http.get(f"{base}/state/nothing-here") as reply:
                assert reply.status == 404
            async with http.delete(f"{base}/state/s/missing") as reply:
                assert reply.status == 404
        assert s.to_dict() == {"kept": 1} and s.size_bytes() == before
        node.replica("state/not-a-doc", LWWMap)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/state/not-a-doc") as reply:
                assert reply.status == 400


async def test_http_serves_a_lanes_state_it_holds_only_from_a_peer() -> None:
    from pycrdt import Doc

    from crdts import YDoc
    from foundation_p2p.services.kvlayout import LOCAL_ORIGIN
    from foundation_p2p.services.lanes import LaneKeyValues

    peer: Doc[object] = Doc(client_id=42)
    with peer.transaction(origin=LOCAL_ORIGIN):
        LaneKeyValues(peer, 42)["temperature"] = 21.5
    async with Node(
        cluster="web", listen="127.0.0.1:0", discovery=None, http="127.0.0.1:0"
    ) as node:
        node._require_engine().replica("state/lanes", YDoc).merge(peer.get_update())
        async with aiohttp.ClientSession() as http:
            base = f"http://{node.http_address}"
            async with http.put(f"{base}/state/lanes/humidity", json=40) as reply:
                assert reply.status == 200
            async with http.get(f"{base}/state/lanes") as reply:
                assert await reply.json() == {"temperature": 21.5, "humidity": 40}
        state = node.shared_state("lanes")
        assert state.layout == "lanes" and state["humidity"] == 40
