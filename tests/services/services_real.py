"""Real asyncio Nodes on loopback, in one process, for the cluster-services tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from foundation_p2p.node import Node
from tests.realnodes import eventually, fast


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
