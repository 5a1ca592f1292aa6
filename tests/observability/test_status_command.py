"""`foundation-p2p status --http HOST:PORT`: the node's view in the terminal."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from crdts import PNCounter
from foundation_p2p.cli import EXIT_FAILED, EXIT_OK, main

pytestmark = pytest.mark.timeout(60)


async def run_status(capsys, *args: str) -> tuple[int, str, str]:
    """Run the command off the loop (it blocks on HTTP) and capture its output."""
    code = await asyncio.get_running_loop().run_in_executor(None, main, ["status", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_status_prints_members_replicas_and_health(make_cluster, eventually, capsys):
    nodes = await make_cluster(3, http=True)
    nodes[1].replica("hits", PNCounter).increment(1)
    await eventually(lambda: "hits" in nodes[0].engine.replication.replicas)
    await nodes[2].stop(leave=False)
    await eventually(lambda: nodes[0].members()["n2"] == "dead", 20.0)
    code, out, err = await run_status(capsys, "--http", nodes[0].http_address)
    assert code == EXIT_OK and err == ""
    lines = out.splitlines()
    assert lines[0].startswith(f"node n0 of cluster 'obs' at {nodes[0].address}")
    assert lines[1].startswith("members: 2 alive of 3 expected; last topology change ")
    rows = {line.split()[0]: line.split() for line in lines if line.startswith("n")}
    assert rows["n0"][1:3] == ["*", "alive"]
    assert rows["n1"][1] == "alive" and rows["n2"][1] == "dead"
    replicas = {
        line.split()[0]: line.split() for line in lines if line.startswith(("sys/", "hits"))
    }
    assert replicas["hits"][1] == "PNCounter" and replicas["sys/members"][1] == "MemberTable"
    assert "health: degraded" in lines
    assert any(line.startswith("  - 1 of 3 members unreachable for ") for line in lines)


async def test_status_json_is_the_overview(make_cluster, capsys):
    [n0] = await make_cluster(1, http=True)
    code, out, _ = await run_status(capsys, "--http", n0.http_address, "--json")
    overview = json.loads(out)
    assert code == EXIT_OK
    assert overview["node"] == "n0" and overview["running"] is True
    assert [m["id"] for m in overview["members"]] == ["n0"]
    assert overview["health"]["cluster_status"] == "ok"


async def test_status_fails_when_the_node_is_unreachable(capsys):
    with socket.socket() as probe:  # a port nothing listens on (bound, never listening)
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
        code, out, err = await run_status(capsys, "--http", address)
    assert code == EXIT_FAILED and out == ""
    assert err.startswith(f"foundation-p2p status: no answer from http://{address}/api/overview")
