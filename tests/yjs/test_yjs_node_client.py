"""A real Yjs client (Node.js with npm `yjs`, `y-websocket`, `ws`) joins a SharedState through
one node of a 2-node loopback cluster and converges with Python edits on the other node:
online and offline writes, and the same key written on both sides."""

from __future__ import annotations

import pytest
from yjs_support import eventually_true

from foundation_p2p.runtime.yjs import client_token
from transport import generate_key

pytestmark = pytest.mark.timeout(90)


def url(node) -> str:  # type: ignore[no-untyped-def]
    return f"ws://{node.http_address}/yjs"


async def test_a_node_js_client_converges_with_python_on_the_other_node(make_nodes, js_client):
    n0, n1 = await make_nodes(2)
    s0, s1 = n0.shared_state("line-3"), n1.shared_state("line-3")
    s1["py"] = {"n": 1, "f": 2.5, "whole": 3.0, "big": 2**60, "b": b"\x01\x02", "none": None}
    s1["list"] = [1, "a", True]
    await eventually_true(lambda: "list" in s0 and "py" in s0)

    js = await js_client(url(n0), "line-3")
    await js.send("connect")
    view = await js.state_where(lambda d: "py" in d and "list" in d)
    assert view["py"] == {
        "n": 1,
        "f": 2.5,
        "whole": {"$float": 3},
        "big": {"$int": str(2**60)},
        "b": {"$u8": [1, 2]},
        "none": None,
    }
    assert view["list"] == [1, "a", True]

    # online: a JS write reaches Python on the other node, as plain Python values
    await js.send("set", key="js", value={"n": 7, "x": 1.5, "nested": [1, "two", {"$u8": [3]}]})
    await eventually_true(lambda: s1.get("js") == {"n": 7, "x": 1.5, "nested": [1, "two", b"\x03"]})
    assert type(s1["js"]["n"]) is int and type(s1["js"]["x"]) is float

    # offline: both sides write, the same key included; after reconnecting all three agree
    await js.send("disconnect")
    await js.wait_for(lambda e: e["event"] == "disconnected")
    await js.send("set", key="offline", value="written offline")
    await js.send("set", key="both", value="js")
    s1["both"] = "python"
    s1["while-away"] = 5
    await eventually_true(lambda: s0.get("both") == "python")
    await js.send("reconnect")
    final = await js.state_where(
        lambda d: "while-away" in d and d.get("both") == s1.get("both") == s0.get("both")
    )
    await eventually_true(lambda: s1.get("offline") == "written offline")
    await eventually_true(lambda: s0.to_dict() == s1.to_dict())
    assert final["both"] in ("js", "python") and final["while-away"] == 5
    assert set(final) == set(s1.to_dict()) == {"py", "list", "js", "offline", "both", "while-away"}
    await js.send("exit")


async def test_a_client_with_the_cluster_token_joins_and_a_read_only_one_cannot_write(
    make_nodes, js_client
):
    key = generate_key()
    n0, n1 = await make_nodes(2, key=key)
    n1.shared_state("plan")["target"] = 40
    await eventually_true(lambda: n0.shared_state("plan").get("target") == 40)

    writer = await js_client(url(n0), "plan", client_token(key))
    await writer.send("connect")
    await writer.state_where(lambda d: d.get("target") == 40)
    await writer.send("set", key="from-js", value="hello")
    await eventually_true(lambda: n1.shared_state("plan").get("from-js") == "hello")

    reader = await js_client(url(n0), "plan", client_token(key, "plan"))
    await reader.send("connect")
    await reader.state_where(lambda d: d.get("from-js") == "hello")
    counters = n0._require_engine().counters
    refused = counters["refused.yjs_readonly_update"]
    await reader.send("set", key="from-reader", value="refused")
    await eventually_true(lambda: counters["refused.yjs_readonly_update"] == refused + 1)
    n1.shared_state("plan")["after"] = 1  # the reader still receives changes
    await reader.state_where(lambda d: d.get("after") == 1)
    assert "from-reader" not in n0.shared_state("plan")
    assert "from-reader" not in n1.shared_state("plan")
