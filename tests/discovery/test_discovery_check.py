"""`check` asks the chosen discovery whether it answers: DNS via the stub resolver, Consul via
the fake agent."""

from __future__ import annotations

from pathlib import Path

from consul_fake import fake_consul
from dns_stub import stub_resolver

from foundation_p2p import Config
from foundation_p2p.environment import Finding, check_readiness

NONE = Path("/nonexistent-service-account")


def codes(findings: list[Finding]) -> dict[str, str]:
    return {finding.code: finding.severity for finding in findings}


def dev(**changes: object) -> Config:
    return Config.development(listen="127.0.0.1:7946", **changes)  # type: ignore[arg-type]


async def test_dns_nxdomain_and_timeout_are_unreachable_errors() -> None:
    async with stub_resolver() as stub:
        config = dev(discovery="dns", dns_name="peers.test", dns_nameservers=[stub.address])
        missing = await check_readiness(config, environ={}, timeout=0.5)
        assert codes(missing)["discovery.unreachable"] == "error"
        assert "peers.test" in next(f.message for f in missing if f.code.endswith("unreachable"))
        stub.zone[("peers.test", "AAAA")] = ["fd00::1"]
        assert "discovery.unreachable" not in codes(
            await check_readiness(config, environ={}, timeout=0.5)
        )
        stub.zone[("peers.test", "AAAA")] = []  # the name exists, with no address
        assert codes(await check_readiness(config, environ={}))["discovery.empty"] == "warning"
        stub.silent = True
        timed_out = await check_readiness(config, environ={}, timeout=0.2)
        assert codes(timed_out)["discovery.unreachable"] == "error"


async def test_kubernetes_service_checked_through_dns(tmp_path: Path) -> None:
    async with stub_resolver() as stub:
        config = dev(dns_nameservers=[stub.address])
        env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "POD_NAMESPACE": "factory"}
        findings = await check_readiness(
            config, cluster="plant-7", environ=env, service_account_dir=NONE, timeout=0.5
        )
        assert codes(findings)["discovery.unreachable"] == "error"
        stub.zone[("plant-7.factory.svc.cluster.local", "A")] = ["10.1.0.4"]
        findings = await check_readiness(
            config, cluster="plant-7", environ=env, service_account_dir=NONE, timeout=0.5
        )
    assert "discovery.unreachable" not in codes(findings)
    choice = next(f for f in findings if f.code == "discovery.choice")
    assert "KUBERNETES_SERVICE_HOST" in choice.message and "plant-7.factory.svc" in choice.message


async def test_consul_agent_down_or_failing_is_an_error() -> None:
    async with fake_consul() as agent:
        env = {"CONSUL_HTTP_ADDR": agent.address}
        up = await check_readiness(dev(), environ=env, service_account_dir=NONE)
        assert "discovery.unreachable" not in codes(up)
        agent.fail_next = 1
        failing = await check_readiness(dev(), environ=env, service_account_dir=NONE)
        assert codes(failing)["discovery.unreachable"] == "error"
        address = agent.address
    down = await check_readiness(
        dev(discovery="consul", consul_address=address), environ={}, timeout=0.5
    )
    finding = next(f for f in down if f.code == "discovery.unreachable")
    assert "CONSUL_HTTP_ADDR" in finding.fix


async def test_mdns_pinned_to_loopback_is_a_warning_in_production_only() -> None:
    production = Config.production(listen="127.0.0.1:7946")
    assert codes(await check_readiness(production, environ={}))["mdns.loopback"] == "warning"
    assert codes(await check_readiness(dev(), environ={}))["mdns.loopback"] == "info"


async def test_mdns_on_an_address_this_host_lacks_is_an_error() -> None:
    config = Config.development(listen="192.0.2.7:7946")  # TEST-NET-1: on no interface here
    findings = await check_readiness(config, environ={})
    assert codes(findings)["mdns.no_interface"] == "error"
    assert "192.0.2.7" in next(f.message for f in findings if f.code == "mdns.no_interface")


async def test_mdns_on_an_interface_without_multicast_is_a_warning(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import ifaddr

    import foundation_p2p.environment as environment

    fake = [ifaddr.Adapter("eth9", "eth9", [ifaddr.IP("10.1.2.3", 24, "eth9")])]
    monkeypatch.setattr(ifaddr, "get_adapters", lambda: fake)
    monkeypatch.setattr(environment, "_multicast", lambda name: False)
    pinned = await check_readiness(Config.development(listen="10.1.2.3:7946"), environ={})
    assert codes(pinned)["mdns.no_multicast"] == "warning"
    assert "eth9" in next(f.message for f in pinned if f.code == "mdns.no_multicast")
    everywhere = await check_readiness(Config.development(listen="0.0.0.0:7946"), environ={})
    assert codes(everywhere)["mdns.no_multicast"] == "warning"
    monkeypatch.setattr(environment, "_multicast", lambda name: True)
    fine = await check_readiness(Config.development(listen="0.0.0.0:7946"), environ={})
    assert codes(fine)["mdns.interfaces"] == "info" and "mdns.no_multicast" not in codes(fine)
