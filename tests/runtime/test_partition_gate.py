"""Fault injection: a PartitionGate drops peer traffic both ways while cut and heals by itself;
its admin endpoint (`--demo-faults`) refuses bad input and callers without the token."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import aiohttp
import pytest

from foundation_p2p.node import Node
from foundation_p2p.runtime.faults import PartitionGate
from transport import derive_token, generate_key

pytestmark = pytest.mark.timeout(60)


class RecordingTransport:
    """A TransportLike that records what reached it."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.disconnected: list[str] = []

    def send(self, peer_id: str, body: bytes, address: str | None = None) -> bool:
        self.sent.append(peer_id)
        return True

    def disconnect(self, peer_id: str) -> bool:
        self.disconnected.append(peer_id)
        return True


def test_a_cut_drops_both_ways_and_heals_when_its_time_is_up() -> None:
    now = [100.0]
    gate = PartitionGate(clock=lambda: now[0])
    transport = RecordingTransport()
    gate.attach(transport)
    delivered: list[tuple[Any, ...]] = []
    deliver = gate.incoming(lambda *args: delivered.append(args))

    assert gate.send("b", b"x") and transport.sent == ["b"]
    deliver("b", b"y")
    assert delivered == [("b", b"y")]

    gate.cut_for(5)
    assert gate.cut and gate.remaining == 5.0
    assert gate.send("b", b"x")  # silent, as a dropped packet is
    deliver("b", b"y")
    assert transport.sent == ["b"] and delivered == [("b", b"y")]
    assert gate.disconnect("b") and transport.disconnected == ["b"]  # never blocked
    assert gate.counters == {"cuts": 1, "dropped_out": 1, "dropped_in": 1}

    now[0] += 5.0
    assert not gate.cut and gate.remaining == 0.0
    gate.send("b", b"x")
    deliver("b", b"z")
    assert transport.sent == ["b", "b"] and delivered[-1] == ("b", b"z")


def test_heal_ends_a_cut_at_once() -> None:
    gate = PartitionGate()
    assert gate.heal() is False
    gate.cut_for(60)
    assert gate.heal() is True and not gate.cut


@pytest.mark.parametrize("seconds", [0, -1, math.nan, math.inf, 3601, True, "5", None])
def test_a_bad_duration_is_refused(seconds: Any) -> None:
    gate = PartitionGate()
    with pytest.raises(ValueError):
        gate.cut_for(seconds)
    assert not gate.cut and gate.counters["cuts"] == 0


async def test_two_nodes_split_by_the_gate_and_rejoin() -> None:
    key = generate_key()
    a = Node(cluster="gate", node_id="a", listen="127.0.0.1:0", discovery=None, key=key)
    b = Node(
        cluster="gate",
        node_id="b",
        listen="127.0.0.1:0",
        discovery=None,
        key=key,
        fault_injection=True,
    )
    async with a, b:
        await b.join(a.address)
        await until(lambda: a.members().get("b") == "alive" and b.members().get("a") == "alive")
        assert b.fault is not None
        b.fault.cut_for(30)
        await until(lambda: a.members()["b"] != "alive" and b.members()["a"] != "alive")
        b.fault.heal()
        await until(lambda: a.members()["b"] == "alive" and b.members()["a"] == "alive")
        assert b.fault.counters["dropped_in"] > 0 and b.fault.counters["dropped_out"] > 0


async def until(condition: Any, timeout: float = 20.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


async def test_the_partition_endpoint_needs_the_flag_the_token_and_good_input() -> None:
    key = generate_key()
    token = {"Authorization": f"Bearer {derive_token(key, 'admin')}"}
    plain = Node(cluster="gate", listen="127.0.0.1:0", discovery=None, key=key, http="127.0.0.1:0")
    faulty = Node(
        cluster="gate",
        listen="127.0.0.1:0",
        discovery=None,
        key=key,
        http="127.0.0.1:0",
        fault_injection=True,
    )
    async with plain, faulty, aiohttp.ClientSession() as http:
        url = f"http://{faulty.http_address}/admin/partition"
        async with http.post(
            f"http://{plain.http_address}/admin/partition", headers=token, json={"seconds": 5}
        ) as reply:
            assert reply.status == 404 and "--demo-faults" in (await reply.json())["error"]
        async with http.post(url, json={"seconds": 5}) as reply:
            assert reply.status == 401
        async with http.post(
            url, headers={"Authorization": "Bearer nope"}, json={"seconds": 5}
        ) as reply:
            assert reply.status == 401
        for body in [b"{not json", b"[]", b'{"secs": 5}', b'{"seconds": -1}', b'{"seconds": "5"}']:
            async with http.post(url, headers=token, data=body) as reply:
                assert reply.status == 400, body
        assert faulty.fault is not None and not faulty.fault.cut
        assert faulty.counters["refused.admin_token"] == 2
        async with http.post(url, headers=token, json={"seconds": 5}) as reply:
            assert reply.status == 200 and (await reply.json())["cut"] is True
        async with http.get(url, headers=token) as reply:
            assert 0 < (await reply.json())["remaining"] <= 5
        async with http.delete(url, headers=token) as reply:
            assert (await reply.json())["cut"] is False
        assert not faulty.fault.cut
