"""detect_environment under synthetic environments, and `Node(cluster="plant-7")` with nothing
else picking the strategy that fits each one (and logging why). No node is started: the choice
is what is tested, so nothing multicasts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from foundation_p2p import Config, ConfigError
from foundation_p2p import environment as environment_module
from foundation_p2p.environment import choose_discovery, detect_environment
from foundation_p2p.node import Node
from transport.discovery import (
    ConsulDiscovery,
    KubernetesDiscovery,
    MdnsDiscovery,
    StaticDiscovery,
)

DETECTION_VARIABLES = (
    "KUBERNETES_SERVICE_HOST",
    "CONSUL_HTTP_ADDR",
    "CONSUL_HTTP_TOKEN",
    "FOUNDATION_SEEDS",
    "FOUNDATION_DISCOVERY",
    "FOUNDATION_K8S_SERVICE",
    "FOUNDATION_K8S_NAMESPACE",
    "POD_NAMESPACE",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No detection variable set and no service account mounted; returns the account dir."""
    for variable in DETECTION_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    account = tmp_path / "serviceaccount"
    monkeypatch.setattr(environment_module, "SERVICE_ACCOUNT_DIR", account)
    return account


def test_nothing_found_means_a_lan(clean_env: Path) -> None:
    found = detect_environment()
    assert (found.kind, found.discovery) == ("lan", "mdns")
    assert "mDNS" in found.reason


def test_a_mounted_service_account_means_kubernetes(clean_env: Path) -> None:
    clean_env.mkdir()
    (clean_env / "token").write_text("secret")
    found = detect_environment()
    assert (found.kind, found.discovery) == ("kubernetes", "kubernetes")
    assert str(clean_env) in found.reason


def test_kubernetes_variables_win_over_consul_and_seeds() -> None:
    env = {
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "CONSUL_HTTP_ADDR": "127.0.0.1:8500",
        "FOUNDATION_SEEDS": "10.0.0.1:7946",
    }
    found = detect_environment(env, Path("/nonexistent"))
    assert found.kind == "kubernetes" and "KUBERNETES_SERVICE_HOST=10.96.0.1" in found.reason
    found = detect_environment({"FOUNDATION_K8S_SERVICE": "gossip"}, Path("/nonexistent"))
    assert found.kind == "kubernetes"


def test_consul_then_seeds() -> None:
    env = {"CONSUL_HTTP_ADDR": "127.0.0.1:8500", "FOUNDATION_SEEDS": "10.0.0.1:7946"}
    found = detect_environment(env, Path("/nonexistent"))
    assert (found.kind, found.discovery) == ("consul", "consul")
    assert "CONSUL_HTTP_ADDR" in found.reason
    found = detect_environment({"FOUNDATION_SEEDS": "10.0.0.1:7946,10.0.0.2:7946"}, Path("/x"))
    assert (found.kind, found.discovery) == ("seeds", "static")
    assert found.seeds == ("10.0.0.1:7946", "10.0.0.2:7946")


def test_foundation_discovery_overrides_detection() -> None:
    env = {"FOUNDATION_DISCOVERY": "mdns", "KUBERNETES_SERVICE_HOST": "10.96.0.1"}
    found = detect_environment(env, Path("/nonexistent"))
    assert (found.kind, found.discovery) == ("explicit", "mdns")


@pytest.mark.parametrize(
    ("env", "field"),
    [({"FOUNDATION_DISCOVERY": "etcd"}, "discovery"), ({"FOUNDATION_SEEDS": "a:1,b"}, "seeds")],
)
def test_bad_environment_values_are_config_errors(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        detect_environment(env, Path("/nonexistent"))
    assert caught.value.field == field


def _node_in(caplog: pytest.LogCaptureFixture) -> Node:
    with caplog.at_level(logging.INFO, logger="foundation_p2p.node"):
        node = Node(cluster="plant-7")
    return node


def test_plain_node_on_a_lan_uses_mdns_pinned_to_its_loopback_listen_address(
    clean_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node = _node_in(caplog)
    discovery = node.discovery
    assert isinstance(discovery, MdnsDiscovery)
    assert discovery.interfaces == ["127.0.0.1"]  # never multicasts on the real interface
    assert "assuming a LAN" in caplog.text


def test_plain_node_in_a_pod_uses_the_headless_service(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clean_env.mkdir()
    (clean_env / "token").write_text("secret")
    (clean_env / "namespace").write_text("factory")
    node = _node_in(caplog)
    discovery = node.discovery
    assert isinstance(discovery, KubernetesDiscovery)
    assert discovery.dns_name == "plant-7.factory.svc.cluster.local"
    assert "service account" in caplog.text and "plant-7.factory.svc" in caplog.text


def test_plain_node_next_to_a_consul_agent_uses_consul(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "127.0.0.1:18500")
    node = _node_in(caplog)
    discovery = node.discovery
    assert isinstance(discovery, ConsulDiscovery)
    assert discovery.base_url == "http://127.0.0.1:18500"
    assert "CONSUL_HTTP_ADDR" in caplog.text


def test_plain_node_with_foundation_seeds_uses_them(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FOUNDATION_SEEDS", "127.0.0.1:7101,127.0.0.1:7102")
    node = _node_in(caplog)
    discovery = node.discovery
    assert isinstance(discovery, StaticDiscovery)
    assert discovery.seeds == ["127.0.0.1:7101", "127.0.0.1:7102"]
    assert "FOUNDATION_SEEDS" in caplog.text


def test_explicit_choices_beat_detection(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    assert isinstance(Node(cluster="p", seeds=["127.0.0.1:7101"]).discovery, StaticDiscovery)
    config = Config.development(discovery="consul", consul_address="127.0.0.1:18500")
    assert isinstance(Node(cluster="p", config=config).discovery, ConsulDiscovery)
    assert Node(cluster="p", discovery=None).discovery is None
    assert Node(cluster="p", discovery="none").discovery is None
    mine = StaticDiscovery(["127.0.0.1:7103"])
    assert Node(cluster="p", discovery=mine).discovery is mine  # a user's own object


def test_mdns_listening_on_every_interface_announces_on_every_interface() -> None:
    chosen = choose_discovery(
        "mdns", cluster="p", config=Config.development(), listen="0.0.0.0:7946"
    )
    assert isinstance(chosen.discovery, MdnsDiscovery)
    assert chosen.discovery.interfaces is None
    pinned = choose_discovery(
        "mdns", cluster="p", config=Config.development(), listen="10.1.2.3:7946"
    )
    assert isinstance(pinned.discovery, MdnsDiscovery)
    assert pinned.discovery.interfaces == ["10.1.2.3"]


def test_dns_discovery_needs_a_name() -> None:
    with pytest.raises(ConfigError) as caught:
        choose_discovery("dns", cluster="p", config=Config.development())
    assert caught.value.field == "dns_name"
    chosen = choose_discovery(
        "dns", cluster="p", config=Config.development(dns_name="peers.example.test")
    )
    assert chosen.discovery is not None and chosen.discovery.name == "dns"
