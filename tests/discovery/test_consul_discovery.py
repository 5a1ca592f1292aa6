"""Consul discovery against an aiohttp fake agent: registration with a TCP check, passing peers
of our cluster only, 500s, an agent that restarts without state, deregistration on close."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from consul_fake import FakeConsulAgent, fake_consul

from transport.discovery import Announcement, Candidate, ConsulDiscovery

ME = Announcement("plant-7", "me", "127.0.0.1:7946", 1)


def consul(agent: FakeConsulAgent) -> ConsulDiscovery:
    return ConsulDiscovery(agent.address, interval=0.05, timeout=1.0)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout)


async def test_registers_with_a_tcp_check_and_offers_passing_peers_of_our_cluster() -> None:
    async with fake_consul() as agent:
        agent.add_peer("foundation-p2p-a", "10.0.0.1", 7001, cluster="plant-7", node_id="a")
        agent.add_peer("foundation-p2p-b", "", 7002, cluster="plant-7", node_id="b")
        agent.add_peer("foundation-p2p-c", "10.0.0.3", 7003, cluster="plant-7", node_id="c")
        agent.critical.add("foundation-p2p-c")
        agent.add_peer("other", "10.0.0.4", 7004, cluster="plant-8", node_id="d")
        agent.add_peer("old", "10.0.0.5", 7005, cluster="plant-7", node_id="e", proto="0")
        agent.services["broken"] = {"ID": "broken", "Name": "foundation-p2p", "Port": "x"}
        discovery = consul(agent)
        offers: list[Candidate] = []
        task = asyncio.create_task(discovery.run(ME, offers.append))
        try:
            await until(lambda: discovery.counters["polls"] >= 1)
        finally:
            await discovery.close()
            await asyncio.wait_for(task, 2.0)
        registered = agent.requests[0]
    assert registered == "PUT /v1/agent/service/register"
    assert set(offers) == {Candidate("10.0.0.1:7001", "a"), Candidate("10.9.9.9:7002", "b")}
    assert discovery.counters["other_cluster"] == 1
    assert discovery.counters["other_protocol"] == 1
    assert discovery.counters["malformed"] == 1
    # our own registration was passing too, but we never offer ourselves
    assert all(c.node_id != "me" for c in offers)


async def test_the_registration_carries_a_tcp_check_and_no_secret() -> None:
    async with fake_consul() as agent:
        discovery = consul(agent)
        task = asyncio.create_task(discovery.run(ME, lambda c: None))
        try:
            await until(lambda: "foundation-p2p-me" in agent.services)
            body = agent.services["foundation-p2p-me"]
        finally:
            await discovery.close()
            await asyncio.wait_for(task, 2.0)
        assert "foundation-p2p-me" not in agent.services  # deregistered on close
    assert body["Address"] == "127.0.0.1" and body["Port"] == 7946
    assert body["Check"]["TCP"] == "127.0.0.1:7946"
    assert body["Check"]["DeregisterCriticalServiceAfter"] == "1m"
    assert body["Meta"] == {"cluster": "plant-7", "node_id": "me", "proto": "1"}


async def test_500s_are_counted_and_the_last_answer_is_kept() -> None:
    async with fake_consul() as agent:
        agent.add_peer("foundation-p2p-a", "10.0.0.1", 7001, cluster="plant-7", node_id="a")
        discovery = consul(agent)
        task = asyncio.create_task(discovery.run(ME, lambda c: None))
        try:
            await until(lambda: discovery.counters["polls"] >= 1)
            agent.fail_next = 4
            await until(lambda: discovery.counters["errors"] >= 2)
            assert discovery.last == [Candidate("10.0.0.1:7001", "a")]
            polls = discovery.counters["polls"]
            await until(lambda: discovery.counters["polls"] > polls)  # recovered
        finally:
            await discovery.close()
            await asyncio.wait_for(task, 2.0)
    assert discovery.last == [Candidate("10.0.0.1:7001", "a")]


async def test_unexpected_json_is_counted_and_the_last_answer_kept() -> None:
    async with fake_consul() as agent:
        agent.add_peer("foundation-p2p-a", "10.0.0.1", 7001, cluster="plant-7", node_id="a")
        discovery = consul(agent)
        task = asyncio.create_task(discovery.run(ME, lambda c: None))
        try:
            await until(lambda: discovery.counters["polls"] >= 1)
            agent.garbage = True
            await until(lambda: discovery.counters["malformed"] >= 2)
        finally:
            await discovery.close()
            await asyncio.wait_for(task, 2.0)
    assert discovery.last == [Candidate("10.0.0.1:7001", "a")]


async def test_an_agent_that_restarts_without_state_gets_us_registered_again() -> None:
    async with fake_consul() as agent:
        discovery = consul(agent)
        task = asyncio.create_task(discovery.run(ME, lambda c: None))
        try:
            await until(lambda: "foundation-p2p-me" in agent.services)
            await agent.stop()  # down: connection refused for a while
            await until(lambda: discovery.counters["errors"] >= 2)
            await agent.restart()
            assert "foundation-p2p-me" not in agent.services
            await until(lambda: "foundation-p2p-me" in agent.services)
        finally:
            await discovery.close()
            await asyncio.wait_for(task, 2.0)
    assert discovery.counters["reregistered"] == 1
    assert discovery.counters["registered"] == 2


async def test_an_unreachable_agent_never_stops_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="transport.discovery.consul")
    async with fake_consul() as agent:
        address = agent.address
    discovery = ConsulDiscovery(address, interval=0.05, timeout=0.5)
    task = asyncio.create_task(discovery.run(ME, lambda c: None))
    try:
        await until(lambda: discovery.counters["errors"] >= 3)
        assert not task.done()
    finally:
        await discovery.close()
        await asyncio.wait_for(task, 2.0)
    assert discovery.last == []
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1  # one per outage, repeats at debug


def test_agent_address_follows_consul_http_addr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "https://consul.internal:8501")
    assert ConsulDiscovery().base_url == "https://consul.internal:8501"
    monkeypatch.delenv("CONSUL_HTTP_ADDR")
    assert ConsulDiscovery().base_url == "http://127.0.0.1:8500"
    assert ConsulDiscovery("10.0.0.2:8500").base_url == "http://10.0.0.2:8500"
