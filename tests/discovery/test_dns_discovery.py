"""DNS and Kubernetes discovery against a stub resolver on 127.0.0.1: SRV, A/AAAA, NXDOMAIN,
timeouts, records that change."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from dns_stub import StubResolver, stub_resolver

from transport.discovery import Announcement, Candidate, DnsDiscovery, DnsLookupError
from transport.discovery.kubernetes import (
    KubernetesDiscovery,
    headless_service_name,
    pod_namespace,
)

ME = Announcement("plant-7", "me", "10.0.0.9:7946", 1)
NAME = "peers.example.test"
SRV = f"_foundation-p2p._tcp.{NAME}"


def dns(stub: StubResolver, **options: object) -> DnsDiscovery:
    return DnsDiscovery(NAME, nameservers=[stub.address], timeout=0.5, **options)  # type: ignore[arg-type]


async def offered(discovery: DnsDiscovery, until: set[str], timeout: float = 5.0) -> set[str]:
    """Run the discovery until every address in `until` was offered (or fail after timeout)."""
    seen: set[str] = set()
    done = asyncio.Event()

    def found(candidate: Candidate) -> None:
        seen.add(candidate.address)
        if until <= seen:
            done.set()

    task = asyncio.create_task(discovery.run(ME, found))
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        await discovery.close()
        await asyncio.wait_for(task, 2.0)
    return seen


async def test_srv_records_give_hosts_and_ports() -> None:
    async with stub_resolver() as stub:
        stub.zone[(SRV.lower(), "SRV")] = [
            "10 50 7001 a.example.test.",
            "20 50 7002 b.example.test.",
        ]
        stub.zone[("a.example.test", "A")] = ["10.0.0.1"]
        stub.zone[("b.example.test", "A")] = ["10.0.0.2"]
        stub.zone[("b.example.test", "AAAA")] = ["fd00::2"]
        candidates = await dns(stub).resolve(7946)
    assert candidates == [
        Candidate("10.0.0.1:7001"),
        Candidate("10.0.0.2:7002"),
        Candidate("[fd00::2]:7002"),
    ]


async def test_an_srv_target_of_root_means_not_here() -> None:
    async with stub_resolver() as stub:
        stub.zone[(SRV.lower(), "SRV")] = ["0 0 7001 .", "10 0 7002 a.example.test."]
        stub.zone[("a.example.test", "A")] = ["10.0.0.1"]
        assert await dns(stub).resolve(7946) == [Candidate("10.0.0.1:7002")]


async def test_without_srv_the_a_records_are_dialed_at_our_port() -> None:
    async with stub_resolver() as stub:
        stub.zone[(NAME, "A")] = ["10.0.0.1", "10.0.0.2"]
        assert set(await dns(stub).resolve(7946)) == {
            Candidate("10.0.0.1:7946"),
            Candidate("10.0.0.2:7946"),
        }
        assert set(await dns(stub, port=9000).resolve(7946)) == {
            Candidate("10.0.0.1:9000"),
            Candidate("10.0.0.2:9000"),
        }
        assert (SRV.lower(), "SRV") in stub.queries


async def test_nxdomain_is_a_typed_error_and_the_poll_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="transport.discovery.dns")
    async with stub_resolver() as stub:
        discovery = dns(stub, interval=0.05)
        with pytest.raises(DnsLookupError) as caught:
            await discovery.resolve(7946)
        assert caught.value.reason == "nxdomain"
        # The name appears later: the running poll finds it with no restart.
        task = asyncio.create_task(offered(discovery, {"10.0.0.5:7946"}))
        while discovery.counters["nxdomain"] < 2:
            await asyncio.sleep(0.01)
        stub.zone[(NAME, "A")] = ["10.0.0.5"]
        assert await task == {"10.0.0.5:7946"}
    levels = [r.levelname for r in caplog.records if "does not exist" in r.getMessage()]
    assert levels[0] == "WARNING" and set(levels[1:]) == {"DEBUG"}  # one warning, then quiet
    assert any("resolves again" in r.getMessage() for r in caplog.records)


async def test_a_silent_server_times_out_and_the_last_answer_is_offered_again() -> None:
    async with stub_resolver() as stub:
        stub.zone[(NAME, "A")] = ["10.0.0.1"]
        discovery = DnsDiscovery(NAME, nameservers=[stub.address], timeout=0.2, interval=0.05)
        offers: list[str] = []
        task = asyncio.create_task(discovery.run(ME, lambda c: offers.append(c.address)))
        try:
            while discovery.counters["polls"] < 1:
                await asyncio.sleep(0.01)
            stub.silent = True
            while discovery.counters["timeout"] < 2:
                await asyncio.sleep(0.01)
            after_timeouts = len(offers)
        finally:
            await discovery.close()
            await asyncio.wait_for(task, 2.0)
        with pytest.raises(DnsLookupError) as caught:
            await discovery.resolve(7946)
        assert caught.value.reason == "timeout"
    assert discovery.last == [Candidate("10.0.0.1:7946")]
    assert after_timeouts >= 3  # once per poll, timeouts included
    assert set(offers) == {"10.0.0.1:7946"}


async def test_a_failing_server_is_servfail_and_the_last_answer_is_kept() -> None:
    async with stub_resolver() as stub:
        stub.zone[(NAME, "A")] = ["10.0.0.1"]
        discovery = dns(stub, interval=0.05)
        task = asyncio.create_task(discovery.run(ME, lambda c: None))
        try:
            while discovery.counters["polls"] < 1:
                await asyncio.sleep(0.01)
            stub.failing = True
            while discovery.counters["servfail"] < 2:
                await asyncio.sleep(0.01)
        finally:
            await discovery.close()
            await asyncio.wait_for(task, 2.0)
    assert discovery.last == [Candidate("10.0.0.1:7946")]


async def test_changed_records_are_followed_and_our_own_address_skipped() -> None:
    async with stub_resolver() as stub:
        stub.zone[(NAME, "A")] = ["10.0.0.1", "10.0.0.9"]  # 10.0.0.9:7946 is ME
        discovery = dns(stub, interval=0.05)
        seen: list[set[str]] = []
        task = asyncio.create_task(discovery.run(ME, lambda c: None))
        try:
            while not discovery.last:
                await asyncio.sleep(0.01)
            seen.append({c.address for c in discovery.last})
            stub.zone[(NAME, "A")] = ["10.0.0.2", "10.0.0.3"]
            while {c.address for c in discovery.last} != {"10.0.0.2:7946", "10.0.0.3:7946"}:
                await asyncio.sleep(0.01)
            seen.append({c.address for c in discovery.last})
        finally:
            await discovery.close()
            await asyncio.wait_for(task, 2.0)
    assert seen == [{"10.0.0.1:7946"}, {"10.0.0.2:7946", "10.0.0.3:7946"}]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="name"):
        DnsDiscovery("")
    with pytest.raises(ValueError, match="port"):
        DnsDiscovery(NAME, port=70000)
    with pytest.raises(ValueError, match="interval"):
        DnsDiscovery(NAME, interval=0)
    with pytest.raises(ValueError, match="malformed"):
        DnsDiscovery(NAME, nameservers=["not-an-ip"])
    with pytest.raises(ValueError, match="not a valid DNS name"):
        DnsDiscovery("a" * 64 + ".example")


def test_kubernetes_name_from_env_and_service_account(tmp_path: Path) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "namespace").write_text("factory\n")
    assert pod_namespace({}, account) == "factory"
    assert pod_namespace({"POD_NAMESPACE": "ops"}, account) == "ops"
    assert pod_namespace({}, tmp_path / "absent") == "default"
    assert headless_service_name("plant-7", {}, account) == "plant-7.factory.svc.cluster.local"
    env = {
        "FOUNDATION_K8S_SERVICE": "gossip",
        "FOUNDATION_K8S_NAMESPACE": "line-3",
        "FOUNDATION_K8S_DOMAIN": "k8s.internal",
    }
    assert headless_service_name("plant-7", env, account) == "gossip.line-3.svc.k8s.internal"
    assert headless_service_name("x", {"FOUNDATION_K8S_SERVICE": "a.b.svc.c"}) == "a.b.svc.c"


async def test_kubernetes_resolves_the_headless_service(tmp_path: Path) -> None:
    async with stub_resolver() as stub:
        stub.zone[("plant-7.factory.svc.cluster.local", "A")] = ["10.1.0.4", "10.1.0.5"]
        discovery = KubernetesDiscovery(
            "plant-7",
            nameservers=[stub.address],
            timeout=0.5,
            environ={"POD_NAMESPACE": "factory"},
            service_account_dir=tmp_path,
        )
        assert discovery.name == "kubernetes"
        assert set(await discovery.resolve(7946)) == {
            Candidate("10.1.0.4:7946"),
            Candidate("10.1.0.5:7946"),
        }
