"""Real asyncio Nodes on loopback, in one process, for the cluster-services tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from foundation_p2p import Config
from foundation_p2p.node import Node


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `check` on the loop until it holds (bounded); fail with the timeout otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        await asyncio.sleep(0.02)


def fast() -> Config:
    """Development timings, sped up so failures show within about a second."""
    return Config.development(probe_interval=0.1, probe_timeout=0.05, anti_entropy_interval=0.2)


@asynccontextmanager
async def real_cluster(count: int = 3, name: str = "svc") -> AsyncIterator[list[Node]]:
    """`count` Nodes joined through the first; every one is stopped on exit."""
    nodes: list[Node] = []
    try:
        for i in range(count):
            seeds = [nodes[0].address] if nodes else []
            node = Node(cluster=name, node_id=f"n{i}", seeds=seeds, config=fast())
            await node.start()
            nodes.append(node)
        await eventually(
            lambda: all(n.members() == {m.node_id: "alive" for m in nodes} for n in nodes)
        )
        yield nodes
    finally:
        for node in nodes:
            await node.stop()


async def registered(nodes: list[Node], name: str, count: int = 1) -> None:
    """Wait until every node's registry lists `count` instances of `name`."""
    await eventually(lambda: all(len(n.registry.lookup(name)) == count for n in nodes))
