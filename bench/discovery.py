"""Discovery benchmark: how long N fresh nodes on loopback take to form one cluster (everyone
alive in everyone's member table) when all they are given is a discovery strategy.

Run: python -m bench.discovery [--quick]   (or python bench/discovery.py)

Strategies: `dns` — SRV records served by the stub resolver of tests/discovery, published once
every node has polled and found nothing, timed from that moment (each node then waits for its
next poll, up to one `discovery_interval`); `consul` — the fake agent of tests/discovery, timed
from the moment the last node listens (earlier nodes are registered, so it finds them at its
first poll). Figures are wall-clock on whatever machine runs this.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder heads sys.path and its name would shadow a package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "discovery")]

from consul_fake import fake_consul  # noqa: E402
from dns_stub import stub_resolver  # noqa: E402

from foundation_p2p import Config  # noqa: E402
from foundation_p2p.node import Node  # noqa: E402

TIMERS = {"probe_interval": 0.2, "probe_timeout": 0.1}


def formed(nodes: list[Node]) -> bool:
    return all(
        len(n.members()) == len(nodes) and set(n.members().values()) == {"alive"} for n in nodes
    )


async def form(nodes: list[Node], publish: Callable[[], Awaitable[None]] | None = None) -> float:
    """Start the nodes, await `publish` (the records appear), return seconds until formed,
    counted from the moment the records appear (or the last node listens)."""
    for node in nodes:
        await node.start()
    try:
        if publish is not None:
            await publish()
        started = time.perf_counter()
        deadline = started + 60.0
        while not formed(nodes):
            if time.perf_counter() > deadline:
                raise TimeoutError("did not form within 60 s")
            await asyncio.sleep(0.01)
        return time.perf_counter() - started
    finally:
        for node in nodes:
            await node.stop()


async def by_dns(size: int, interval: float) -> float:
    name = f"{uuid.uuid4().hex[:8]}.bench.test"
    async with stub_resolver() as stub:
        config = Config.development(
            discovery="dns",
            dns_name=name,
            dns_nameservers=[stub.address],
            discovery_interval=interval,
            **TIMERS,
        )
        nodes = [Node(cluster="bench-dns", node_id=f"d{i}", config=config) for i in range(size)]

        async def publish() -> None:
            # Every node has polled once and found nothing: the records now appear mid-interval.
            while not all(n.discovery.counters["nxdomain"] for n in nodes):  # type: ignore[union-attr]
                await asyncio.sleep(0.01)
            ports = [node.address.rpartition(":")[2] for node in nodes]
            stub.zone[(f"_foundation-p2p._tcp.{name}", "SRV")] = [
                f"0 0 {port} host.{name}." for port in ports
            ]
            stub.zone[(f"host.{name}", "A")] = ["127.0.0.1"]

        return await form(nodes, publish)


async def by_consul(size: int, interval: float) -> float:
    async with fake_consul() as agent:
        config = Config.development(
            discovery="consul",
            consul_address=agent.address,
            discovery_interval=interval,
            **TIMERS,
        )
        nodes = [Node(cluster="bench-consul", node_id=f"c{i}", config=config) for i in range(size)]
        return await form(nodes)


async def main(quick: bool) -> None:
    logging.getLogger("transport.discovery").setLevel(logging.ERROR)  # expected NXDOMAINs
    sizes = [3] if quick else [3, 8]
    runs = 2 if quick else 5
    interval = 1.0
    print(
        f"discovery_interval={interval} s, probe_interval={TIMERS['probe_interval']} s, "
        f"{runs} runs per row"
    )
    print("| strategy | nodes | formed after (median) | (max) |")
    print("|---|---|---|---|")
    for strategy, run in (("dns (SRV)", by_dns), ("consul", by_consul)):
        for size in sizes:
            times = [await run(size, interval) for _ in range(runs)]
            print(
                f"| {strategy} | {size} | {statistics.median(times):.2f} s | {max(times):.2f} s |"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 nodes, 2 runs")
    asyncio.run(main(parser.parse_args().quick))
