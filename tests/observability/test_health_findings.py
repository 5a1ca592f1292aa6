"""/health findings: expected vs actual members, unreachable members and for how long, members
reported alive by others but silent to us, recommendations. The findings are checked on
hand-driven Drivers (no sockets, time set by hand); one loopback test checks the endpoint."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from foundation_p2p.runtime.metrics import health_details, silence_limit


def view(bench: Any, name: str) -> Any:
    """What health_details reads from a node, for one bench driver."""
    driver = bench[name]
    return SimpleNamespace(
        node_id=name, cluster="obs", address="", engine=driver.engine, observer=driver.observer
    )


def test_a_healthy_cluster_has_no_findings(bench):
    bench.connect()
    bench.run(2.0)
    health = health_details(view(bench, "a"))
    assert health["expected_members"] == health["actual_members"] == 2
    assert health["unreachable"] == [] and health["suspected_partitions"] == []
    assert health["recommendations"] == []
    assert health["cluster_status"] == "ok"
    assert health["last_topology_change_ago"] == pytest.approx(2.0, abs=0.1)


def test_a_crashed_member_is_unreachable_suspect_then_dead_for_a_measured_time(bench):
    bench.connect()
    bench.run(1.0)
    bench.crash("b")
    a = bench["a"]
    for _ in range(200):  # bounded: 10 s of virtual time
        bench.run(0.05)
        if a.engine.members()["b"] == "suspect":
            break
    suspected_at = bench.now
    health = health_details(view(bench, "a"))
    assert health["unreachable"] == [{"member": "b", "status": "suspect", "for": 0.0}]
    assert health["cluster_status"] == "degraded"
    for _ in range(400):
        bench.run(0.05)
        if a.engine.members()["b"] == "dead":
            break
    dead_at = bench.now
    bench.run(40.0)
    health = health_details(view(bench, "a"))
    assert a.engine.members()["b"] == "dead" and dead_at > suspected_at
    [entry] = health["unreachable"]
    assert entry["member"] == "b" and entry["status"] == "dead"
    assert entry["for"] == pytest.approx(bench.now - dead_at)
    assert health["expected_members"] == 2 and health["actual_members"] == 1
    assert health["recommendations"][0].startswith("1 of 2 members unreachable for 40 s: b (dead)")


def test_a_member_alive_for_others_but_silent_to_us_is_a_suspected_partition(make_bench):
    bench = make_bench(("a", "b", "c"))
    bench.connect()
    bench.run(2.0)
    bench.cut("a", "b")  # a and b cannot talk; both still reach c, which vouches for each
    limit = silence_limit(bench["a"].engine)
    bench.run(limit + 3.0)
    assert bench["a"].engine.members()["b"] == "alive"  # indirect probes through c succeed
    health = health_details(view(bench, "a"))
    [finding] = [p for p in health["suspected_partitions"] if "silent_for" in p]
    assert finding["member"] == "b"
    assert finding["silent_for"] > limit
    assert finding["reason"] == "reported alive by others, silent to us"
    assert any(r.startswith("b is reported alive by others") for r in health["recommendations"])
    assert health["unreachable"] == []
    assert health_details(view(bench, "c"))["suspected_partitions"] == []


def test_a_stopped_node_has_no_findings_to_report():
    stopped = SimpleNamespace(node_id="x", cluster="obs", address="", engine=None, observer=None)
    assert health_details(stopped) == {}


@pytest.mark.timeout(60)
async def test_health_endpoint_keeps_its_fields_and_reports_a_crashed_member(
    make_cluster, eventually
):
    nodes = await make_cluster(3, http=True)
    await nodes[2].stop(leave=False)  # a crash: no farewell
    await eventually(lambda: nodes[0].members()["n2"] == "dead", 20.0)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{nodes[0].http_address}/health") as response:
            assert response.status == 200
            health = await response.json()
    assert health["status"] == "ok" and health["node"] == "n0" and health["cluster"] == "obs"
    assert health["members"] == {"alive": 2, "dead": 1}
    assert health["expected_members"] == 3 and health["actual_members"] == 2
    assert [u["member"] for u in health["unreachable"]] == ["n2"]
    assert health["recommendations"][0].startswith("1 of 3 members unreachable for ")
    assert health["cluster_status"] == "degraded"
