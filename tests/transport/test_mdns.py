"""mDNS discovery over loopback: instances find each other, filter by cluster, and recover.

Every instance is pinned to 127.0.0.1 so the tests never multicast on a real network. Cluster
names and node ids are unique per test, so services of a concurrent test run are filtered out.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from transport.discovery import Announcement, Candidate, Discovery, MdnsDiscovery
from transport.discovery.mdns import SERVICE_TYPE, instance_label

pytestmark = pytest.mark.timeout(60)

LOOPBACK = ["127.0.0.1"]
WAIT = 10.0


@dataclass
class Running:
    """One started MdnsDiscovery, its run task and everything it offered."""

    discovery: MdnsDiscovery
    me: Announcement
    offers: list[Candidate] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] = field(init=False)

    def __post_init__(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.discovery.run(self.me, self.found))

    def found(self, candidate: Candidate) -> None:
        self.offers.append(candidate)
        self.changed.set()

    @property
    def seen(self) -> dict[str, str]:
        """The latest address offered for each node id."""
        return {c.node_id: c.address for c in self.offers if c.node_id is not None}

    async def until(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        """Wait (bounded) until `predicate` holds, re-checking after every offer."""

        async def poll() -> None:
            while not predicate():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.1)

        await asyncio.wait_for(poll(), timeout)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.discovery.close()


Start = Callable[..., Running]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Start pinned MdnsDiscovery instances; stop them all at teardown."""
    started: list[Running] = []
    tag = uuid.uuid4().hex[:8]

    def _start(
        node: str, port: int, cluster: str = "main", proto: int = 1, reoffer_interval: float = 5.0
    ) -> Running:
        discovery = MdnsDiscovery(interfaces=LOOPBACK, reoffer_interval=reoffer_interval)
        me = Announcement(f"{cluster}-{tag}", f"{node}-{tag}", f"127.0.0.1:{port}", proto)
        running = Running(discovery, me)
        started.append(running)
        return running

    yield _start
    await asyncio.gather(*(running.stop() for running in started))


def _node(running: Running) -> str:
    return running.me.node_id


async def _until_sees(running: Running, others: list[Running]) -> None:
    expected = {_node(other): other.me.address for other in others}
    await running.until(lambda: running.seen == expected)


async def test_two_instances_find_each_other(start: Start) -> None:
    began = time.monotonic()
    a, b = start("a", 40001), start("b", 40002)
    await a.until(lambda: _node(b) in a.seen)
    await b.until(lambda: _node(a) in b.seen)
    assert time.monotonic() - began < WAIT
    assert a.seen == {_node(b): "127.0.0.1:40002"}
    assert b.seen == {_node(a): "127.0.0.1:40001"}


async def test_three_instances_find_each_other(start: Start) -> None:
    nodes = [start(name, port) for name, port in (("a", 40011), ("b", 40012), ("c", 40013))]
    for running in nodes:
        await _until_sees(running, [other for other in nodes if other is not running])


async def test_other_cluster_and_protocol_are_not_reported(start: Start) -> None:
    a, b = start("a", 40021), start("b", 40022)
    other_cluster = start("c", 40023, cluster="other")
    other_proto = start("d", 40024, proto=2)
    await a.until(
        lambda: (
            _node(b) in a.seen
            and a.discovery.counters["other_cluster"] >= 1
            and a.discovery.counters["other_protocol"] >= 1
        )
    )
    assert a.seen == {_node(b): b.me.address}
    await other_cluster.until(lambda: other_cluster.discovery.counters["other_cluster"] >= 3)
    await other_proto.until(lambda: other_proto.discovery.counters["other_protocol"] >= 2)
    assert other_cluster.offers == [] and other_proto.offers == []


async def test_restarted_instance_is_found_again(start: Start) -> None:
    a, b = start("a", 40031), start("b", 40032)
    await a.until(lambda: _node(b) in a.seen)
    await b.stop()
    b2 = start("b", 40033)
    assert _node(b2) == _node(b)
    await a.until(lambda: a.seen.get(_node(b)) == "127.0.0.1:40033")
    await b2.until(lambda: b2.seen == {_node(a): a.me.address})


async def test_known_peers_are_offered_again(start: Start) -> None:
    a, b = start("a", 40041, reoffer_interval=0.2), start("b", 40042)
    await a.until(lambda: sum(c.node_id == _node(b) for c in a.offers) >= 3)
    assert {c.address for c in a.offers} == {b.me.address}


async def test_malformed_services_are_ignored(start: Start) -> None:
    bogus = AsyncZeroconf(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
    records: list[tuple[str, int, dict[bytes, bytes | None]]] = [
        ("missing", 40051, {b"cluster": b"x"}),
        ("binary", 40052, {b"cluster": b"\xff\xfe", b"node": b"n", b"proto": b"1"}),
        ("noproto", 40053, {b"cluster": b"x", b"node": b"n", b"proto": b"one"}),
        ("novalue", 40054, {b"cluster": None, b"node": b"n", b"proto": b"1"}),
        ("noport", 0, {b"cluster": b"x", b"node": b"n", b"proto": b"1"}),
    ]
    tag = uuid.uuid4().hex[:8]
    try:
        for name, port, props in records:
            info = AsyncServiceInfo(
                SERVICE_TYPE,
                f"{name}-{tag}.{SERVICE_TYPE}",
                port=port,
                properties=props,
                server=f"{name}-{tag}.local.",
                parsed_addresses=["127.0.0.1"],
            )
            await bogus.async_register_service(info, cooperating_responders=True)
        a, b = start("a", 40055), start("b", 40056)
        await a.until(
            lambda: _node(b) in a.seen and a.discovery.counters["malformed"] >= len(records)
        )
        assert a.seen == {_node(b): b.me.address}
        assert not a.task.done()
    finally:
        await bogus.async_close()


async def test_close_is_idempotent(start: Start) -> None:
    unused = MdnsDiscovery(interfaces=LOOPBACK)
    await unused.close()
    await unused.close()
    a = start("a", 40061)
    await asyncio.sleep(0.2)
    await a.discovery.close()
    await a.discovery.close()
    await asyncio.wait_for(a.task, 2)  # run returns once closed, even if nobody cancels it
    await a.stop()
    with pytest.raises(RuntimeError, match="closed"):
        await a.discovery.run(a.me, a.found)


async def test_close_leaves_no_tasks_or_sockets(start: Start) -> None:
    tasks_before, fds_before = asyncio.all_tasks(), _open_fds()
    a, b = start("a", 40071), start("b", 40072)
    await a.until(lambda: _node(b) in a.seen)
    assert _open_fds() > fds_before
    await a.stop()
    await b.stop()
    await asyncio.sleep(0)
    assert {t for t in asyncio.all_tasks() - tasks_before if not t.done()} == set()
    assert _open_fds() == fds_before


def _open_fds() -> int:
    fds = Path("/proc/self/fd")
    if not fds.exists():
        pytest.skip("needs /proc to count open sockets")
    return len(list(fds.iterdir()))


async def test_txt_carries_only_cluster_node_and_protocol() -> None:
    me = Announcement("main", "node-1", "127.0.0.1:40081", 3)
    info = await MdnsDiscovery(interfaces=LOOPBACK).service_info(me)
    assert info.properties == {b"cluster": b"main", b"node": b"node-1", b"proto": b"3"}
    assert not any(re.search("key|secret|token|psk", k.decode(), re.I) for k in info.properties)
    assert info.port == 40081 and info.parsed_addresses() == ["127.0.0.1"]


async def test_unspecified_host_announces_the_pinned_interface() -> None:
    me = Announcement("main", "node-1", "0.0.0.0:40091", 1)
    info = await MdnsDiscovery(interfaces=LOOPBACK).service_info(me)
    assert info.parsed_addresses() == ["127.0.0.1"]


async def test_hostname_is_resolved_for_the_announcement() -> None:
    me = Announcement("main", "node-1", "localhost:40093", 1)
    info = await MdnsDiscovery(interfaces=LOOPBACK).service_info(me)
    assert info.parsed_addresses() == ["127.0.0.1"]


def test_instance_label_follows_dns_label_rules() -> None:
    ids = ["node-1", "Node-1", "node_1", "ünïcode.node", "x" * 200, "---", ""]
    labels = [instance_label(node_id) for node_id in ids]
    assert labels[0] == "node-1"
    assert len(set(labels)) == len(labels)
    for label in labels:
        assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", label), label
        assert len(label) <= 63
    assert instance_label("x" * 200) == instance_label("x" * 200)


def test_is_a_discovery_and_validates_options() -> None:
    assert isinstance(MdnsDiscovery(interfaces=LOOPBACK), Discovery)
    with pytest.raises(ValueError, match="service type"):
        MdnsDiscovery(interfaces=LOOPBACK, service_type="_http._tcp.example.")
    with pytest.raises(ValueError, match="> 0"):
        MdnsDiscovery(interfaces=LOOPBACK, reoffer_interval=0)
