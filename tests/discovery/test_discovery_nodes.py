"""Real nodes on loopback finding each other through DNS (the stub resolver) and Consul (the
fake agent), chosen by config alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from consul_fake import fake_consul
from dns_stub import stub_resolver

from foundation_p2p import Config
from foundation_p2p.node import Node

# The development profile's probe timers (200/100 ms) stay calm on a loaded machine; only the
# discovery poll is made quick.
FAST = {"discovery_interval": 0.1}


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(wait(), timeout)


def formed(nodes: list[Node]) -> bool:
    return all(
        len(node.members()) == len(nodes) and set(node.members().values()) == {"alive"}
        for node in nodes
    )


async def test_nodes_find_each_other_through_srv_records() -> None:
    name = f"{uuid.uuid4().hex[:8]}.plant.test"
    async with stub_resolver() as stub:
        config = Config.development(
            discovery="dns", dns_name=name, dns_nameservers=[stub.address], **FAST
        )
        nodes = [Node(cluster="dns-it", node_id=f"d{i}", config=config) for i in range(3)]
        assert all(node.discovery is not None and node.discovery.name == "dns" for node in nodes)
        try:
            for node in nodes:
                await node.start()
            records = [f"0 0 {node.address.rpartition(':')[2]} host.{name}." for node in nodes]
            stub.zone[(f"_foundation-p2p._tcp.{name}", "SRV")] = records
            stub.zone[(f"host.{name}", "A")] = ["127.0.0.1"]
            await until(lambda: formed(nodes))
        finally:
            for node in nodes:
                await node.stop()


async def test_nodes_find_each_other_through_a_consul_agent() -> None:
    async with fake_consul() as agent:
        config = Config.development(discovery="consul", consul_address=agent.address, **FAST)
        nodes = [Node(cluster="consul-it", node_id=f"c{i}", config=config) for i in range(3)]
        try:
            for node in nodes:
                await node.start()
            await until(lambda: formed(nodes))
            assert {s["ID"] for s in agent.services.values()} == {
                "foundation-p2p-c0",
                "foundation-p2p-c1",
                "foundation-p2p-c2",
            }
        finally:
            for node in nodes:
                await node.stop()
        assert agent.services == {}  # every node deregistered as it left
