"""Real nodes on loopback, in one process: asyncio Nodes over real TCP."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from crdts import AWORSet, LWWMap, PNCounter
from foundation_p2p import Config, ConfigError
from foundation_p2p.node import Node, NodeError
from tests.realnodes import eventually, fast

pytestmark = pytest.mark.timeout(60)


async def cluster(count: int, **options: object) -> list[Node]:
    first = Node(cluster="it", node_id="n0", config=fast(), **options)  # type: ignore[arg-type]
    await first.start()
    nodes = [first]
    for i in range(1, count):
        node = Node(
            cluster="it",
            node_id=f"n{i}",
            seeds=[first.address],
            config=fast(),
            **options,  # type: ignore[arg-type]
        )
        await node.start()
        nodes.append(node)
    await eventually(lambda: all(len(n.members()) == count for n in nodes))
    await eventually(lambda: all(set(n.members().values()) == {"alive"} for n in nodes))
    return nodes


async def test_three_nodes_form_a_cluster_and_replicate():
    nodes = await cluster(3)
    try:
        nodes[0].replica("hits", PNCounter).increment(2)
        nodes[2].replica("hits", PNCounter).increment(5)
        nodes[1].replica("online", AWORSet).add("sensor-1")
        await eventually(lambda: all(n.replica("hits", PNCounter).value == 7 for n in nodes))
        await eventually(
            lambda: all(n.replica("online", AWORSet).value == {"sensor-1"} for n in nodes)
        )
    finally:
        for node in nodes:
            await node.stop()


async def test_a_crashed_node_is_marked_dead_and_a_restart_rejoins():
    nodes = await cluster(3)
    try:
        address = nodes[2].address
        await nodes[2].stop(leave=False)  # like kill -9: no farewell
        await eventually(lambda: all(n.members()["n2"] == "dead" for n in nodes[:2]), 20.0)
        nodes[0].replica("config", LWWMap).set("mode", "auto")
        revived = Node(
            cluster="it", node_id="n2", listen=address, seeds=[nodes[0].address], config=fast()
        )
        await revived.start()
        nodes[2] = revived
        await eventually(lambda: all(n.members().get("n2") == "alive" for n in nodes), 20.0)
        await eventually(lambda: revived.replica("config", LWWMap).get("mode") == "auto", 20.0)
    finally:
        for node in nodes:
            await node.stop()


async def test_graceful_leave_is_seen_as_left():
    nodes = await cluster(3)
    try:
        await nodes[1].stop(leave=True)
        await eventually(lambda: nodes[0].members()["n1"] == "left")
    finally:
        for node in (nodes[0], nodes[2]):
            await node.stop()


async def test_a_node_of_another_cluster_cannot_join():
    nodes = await cluster(2)
    stranger = Node(cluster="other", node_id="x", seeds=[nodes[0].address], config=fast())
    await stranger.start()
    try:
        await asyncio.sleep(0.5)
        assert "x" not in nodes[0].members()
        assert set(stranger.members()) == {"x"}
    finally:
        await stranger.stop()
        for node in nodes:
            await node.stop()


async def test_wrong_or_missing_key_cannot_join():
    key, other = "A" * 43 + "=", "B" * 43 + "="
    nodes = await cluster(2, key=key)
    outsiders = [
        Node(cluster="it", node_id="wrong-key", seeds=[nodes[0].address], key=other),
        Node(cluster="it", node_id="no-key", seeds=[nodes[0].address], config=fast()),
    ]
    for outsider in outsiders:
        await outsider.start()
    try:
        await asyncio.sleep(0.6)
        assert set(nodes[0].members()) == {"n0", "n1"}
        refusals = nodes[0].counters
        assert refusals.get("refused.auth_failed", 0) >= 1  # the wrong key
        assert refusals.get("refused.key_required", 0) >= 1  # no key at all
    finally:
        for node in outsiders + nodes:
            await node.stop()


async def test_misuse_is_refused_clearly():
    with pytest.raises(ConfigError, match="cluster key"):
        Node(cluster="p", config=Config.production())
    with pytest.raises(ConfigError, match="seeds"):
        Node(cluster="p", discovery="static")
    node = Node(cluster="p")
    with pytest.raises(NodeError, match="not started"):
        node.members()


async def test_nodes_find_each_other_by_mdns_on_loopback():
    tag = f"mdns-{uuid.uuid4().hex[:8]}"  # concurrent runs on this host stay apart
    nodes = [
        Node(
            cluster=tag,
            node_id=f"m{i}",
            discovery="mdns",
            mdns_interfaces=["127.0.0.1"],  # never multicast on the machine's real interface
            config=fast(),
        )
        for i in range(3)
    ]
    for node in nodes:
        await node.start()
    try:
        await eventually(lambda: all(len(n.members()) == 3 for n in nodes), 20.0)
        await eventually(lambda: all(set(n.members().values()) == {"alive"} for n in nodes))
    finally:
        for node in nodes:
            await node.stop()


async def test_key_rotation_across_a_running_cluster_loses_nothing():
    from transport import generate_key, key_to_text

    old, new = key_to_text(generate_key()), key_to_text(generate_key())
    nodes = await cluster(3, key=old)
    try:
        counter = [0]

        def write() -> None:
            counter[0] += 1
            nodes[counter[0] % 3].replica("hits", PNCounter).increment(1)

        write()
        for node in nodes:  # 1. every node accepts the new key...
            assert node.keyring is not None
            node.keyring.install(new)
        write()
        for node in nodes:  # 2. ...then sends with it...
            assert node.keyring is not None
            node.keyring.use(new)
        write()
        await asyncio.sleep(0.3)
        for node in nodes:  # 3. ...then the old key is dropped
            assert node.keyring is not None
            node.keyring.remove(old)
        write()
        await eventually(lambda: all(n.replica("hits", PNCounter).value == 4 for n in nodes))
        assert all(set(n.members().values()) == {"alive"} for n in nodes)
    finally:
        for node in nodes:
            await node.stop()


async def test_a_valid_frame_of_an_unknown_type_is_refused_and_the_node_serves_on():
    import msgpack

    from foundation_p2p.engine import PROTOCOL_VERSION
    from transport import Transport

    nodes = await cluster(2)
    rogue = Transport("rogue", "it", PROTOCOL_VERSION, on_frame=lambda peer, body: None)
    await rogue.start("127.0.0.1:0")
    try:
        peer = await rogue.connect(nodes[0].address)
        assert peer == "n0"
        rogue.send("n0", msgpack.packb([PROTOCOL_VERSION, 99, "who knows"]))
        rogue.send("n0", b"\xc1\xc1 not msgpack")
        rogue.send("n0", msgpack.packb([PROTOCOL_VERSION + 7, 1, 1, "n0", []]))
        await eventually(lambda: nodes[0].counters.get("refused.unknown_type", 0) == 1)
        await eventually(lambda: nodes[0].counters.get("refused.malformed", 0) == 1)
        await eventually(lambda: nodes[0].counters.get("refused.version", 0) == 1)
        nodes[1].replica("hits", PNCounter).increment(3)
        await eventually(lambda: nodes[0].replica("hits", PNCounter).value == 3)
    finally:
        await rogue.close()
        for node in nodes:
            await node.stop()
