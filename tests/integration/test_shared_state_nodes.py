"""SharedState across real nodes on loopback (in one process, real TCP): convergence of
concurrent writes, observers with origins, and write levels with members down."""

from __future__ import annotations

import asyncio

import pytest

from foundation_p2p import ConsistencyTimeout
from foundation_p2p.node import Node
from foundation_p2p.services.state import Change
from tests.realnodes import eventually, fast

pytestmark = pytest.mark.timeout(60)


async def cluster(count: int) -> list[Node]:
    first = Node(cluster="ss", node_id="n0", config=fast(), discovery=None)
    await first.start()
    nodes = [first]
    for i in range(1, count):
        node = Node(cluster="ss", node_id=f"n{i}", seeds=[first.address], config=fast())
        await node.start()
        nodes.append(node)
    await eventually(lambda: all(len(n.members()) == count for n in nodes))
    await eventually(lambda: all(set(n.members().values()) == {"alive"} for n in nodes))
    return nodes


async def stop_all(nodes: list[Node]) -> None:
    for node in nodes:
        await node.stop(leave=False)


@pytest.mark.parametrize("count", [2, 3])
async def test_concurrent_writes_to_one_key_converge(count: int) -> None:
    nodes = await cluster(count)
    try:
        states = [n.shared_state("line-3") for n in nodes]
        for round_ in range(20):
            for i, s in enumerate(states):  # every node writes the same key at once
                s["temperature"] = {"by": i, "round": round_}
                s.counter("writes").increment()
        await eventually(lambda: len({repr(s.to_dict()) for s in states}) == 1)
        assert states[0]["temperature"]["round"] == 19
        await eventually(lambda: all(s.counter("writes").value == 20 * count for s in states))
        for s in states:
            await s.synced(timeout=5.0)
    finally:
        await stop_all(nodes)


async def test_observers_fire_once_per_change_with_the_origin() -> None:
    nodes = await cluster(3)
    try:
        seen: dict[str, list[Change]] = {n.node_id: [] for n in nodes}
        for node in nodes:
            node.shared_state("s").observe(seen[node.node_id].append)
        a = nodes[0].shared_state("s")
        await a.set("x", 1, write="all", timeout=5.0)
        await asyncio.sleep(0.5)  # a few anti-entropy rounds: they must not report again
        assert seen["n0"] == [Change(frozenset({"x"}), "local")]
        assert seen["n1"] == [Change(frozenset({"x"}), "n0")]
        assert seen["n2"] == [Change(frozenset({"x"}), "n0")]
        await nodes[2].shared_state("s").set("y", 2, write="all", timeout=5.0)
        assert seen["n0"][1:] == [Change(frozenset({"y"}), "n2")]
        await eventually(lambda: len(seen["n1"]) == 2)
        assert seen["n1"][1] == Change(frozenset({"y"}), "n2")
    finally:
        await stop_all(nodes)


async def test_majority_with_one_of_three_down_and_timeout_with_two_down() -> None:
    nodes = await cluster(3)
    try:
        a = nodes[0].shared_state("s")
        await a.set("k", 1, write="all", timeout=5.0)
        await nodes[2].stop(leave=False)  # like a crash: it stays a member, now unreachable
        await a.set("k", 2, write="majority", timeout=5.0)  # n0 + n1: 2 of 3
        with pytest.raises(ConsistencyTimeout):
            await a.set("k", 3, write="all", timeout=0.5)
        await nodes[1].stop(leave=False)
        started = asyncio.get_running_loop().time()
        with pytest.raises(ConsistencyTimeout) as caught:
            await a.set("k", 4, write="majority", timeout=1.0)  # 1 of 3
        assert asyncio.get_running_loop().time() - started >= 0.9
        assert caught.value.needed == 2 and caught.value.acked == frozenset()
        assert a["k"] == 4  # applied locally all the same
    finally:
        await stop_all(nodes)
