"""GET /metrics: Prometheus text from a per-node registry, parsed with prometheus_client's own
parser and checked against the node it describes (real nodes on loopback)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crdts import PNCounter
from foundation_p2p.node import Node

pytestmark = pytest.mark.timeout(60)


async def scrape(node: Node) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{sample name: {sorted labels: value}} from the node's /metrics."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{node.http_address}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            text = await response.text()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


async def test_metrics_parse_and_match_the_node(make_cluster, eventually):
    nodes = await make_cluster(3, http=True)
    n0 = nodes[0]
    n0.replica("hits", PNCounter).increment(4)
    await eventually(lambda: all(n.replica("hits", PNCounter).value == 4 for n in nodes))
    observer = n0.observer
    assert observer is not None
    await eventually(lambda: set(observer.replication_lag().values()) == {0.0})
    before_in = dict(observer.messages_in)
    metrics = await scrape(n0)
    after_in = dict(observer.messages_in)

    assert metrics["foundation_p2p_node_info"] == {(("cluster", "obs"), ("node", "n0")): 1.0}
    members = {dict(k)["state"]: v for k, v in metrics["foundation_p2p_members"].items()}
    assert members == {"alive": 3.0, "suspect": 0.0, "dead": 0.0, "left": 0.0}
    received = {
        dict(k)["type"]: v for k, v in metrics["foundation_p2p_messages_received_total"].items()
    }
    assert set(before_in) <= set(received) <= set(after_in)
    for kind, value in received.items():
        assert before_in.get(kind, 0) <= value <= after_in[kind]
    sent_bytes = metrics["foundation_p2p_sent_bytes_total"]
    assert sum(sent_bytes.values()) <= sum(observer.bytes_out.values())
    assert sum(sent_bytes.values()) > 0
    rounds = metrics["foundation_p2p_anti_entropy_rounds_total"][()]
    assert 0 < rounds <= n0.counters["anti_entropy.rounds"]
    sizes = {dict(k)["replica"]: v for k, v in metrics["foundation_p2p_replica_size_bytes"].items()}
    engine = n0.engine
    assert engine is not None
    assert sizes["hits"] == observer.replica_summary("hits", engine.replication.replicas["hits"])[0]
    assert set(sizes) == {"sys/members", "hits"}
    lag = {dict(k)["peer"]: v for k, v in metrics["foundation_p2p_replication_lag_seconds"].items()}
    assert set(lag) == {"n1", "n2"}  # both hold our write
    assert all(value == 0.0 for value in lag.values())


async def test_refused_frames_are_counted_by_reason(make_cluster, eventually):
    [n0] = await make_cluster(1, http=True)
    host, port = n0.address.rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"\xff\xff\xff\xff")  # a length prefix far above max_frame_bytes
    await writer.drain()
    await eventually(lambda: n0.counters.get("refused.frame_too_large", 0) == 1)
    writer.close()
    metrics = await scrape(n0)
    refused = {
        dict(k)["reason"]: v for k, v in metrics["foundation_p2p_refused_frames_total"].items()
    }
    assert refused == {"frame_too_large": 1.0}


async def test_two_nodes_in_one_process_each_have_their_own_registry(make_cluster):
    nodes = await make_cluster(2, http=True)
    first, second = await scrape(nodes[0]), await scrape(nodes[1])
    assert list(first["foundation_p2p_node_info"]) == [(("cluster", "obs"), ("node", "n0"))]
    assert list(second["foundation_p2p_node_info"]) == [(("cluster", "obs"), ("node", "n1"))]


async def test_cache_operations_and_registry_entries_are_shown(make_cluster):
    [n0] = await make_cluster(1, http=True)
    await n0.registry.register("thermo", None, capabilities={"unit": "C"})
    assert await n0.cache.get("k") is None
    await n0.cache.put("k", 1)
    assert await n0.cache.get("k") == 1
    metrics = await scrape(n0)
    family = metrics["foundation_p2p_cache_operations_total"]
    labelled = [(dict(k), v) for k, v in family.items()]
    operations = {labels["operation"]: v for labels, v in labelled if labels["cache"] == "default"}
    assert operations["hits"] == 1.0 and operations["misses"] == 1.0
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{n0.http_address}/api/overview") as response:
            overview = await response.json()
    services = {entry["service"]: entry["instances"] for entry in overview["registry"]}
    [instance] = services["thermo"]
    assert instance["node"] == "n0" and instance["capabilities"] == {"unit": "C"}
    assert "sys/registry" in {r["name"] for r in overview["replicas"]}
