"""Profiles, Config.from_env / from_file, and every ConfigError case (field and accepted values
named, raised before anything starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from foundation_p2p import Config, ConfigError
from foundation_p2p.config import PROFILES


def test_the_three_profiles_differ_where_their_purpose_says() -> None:
    dev, prod, edge = Config.development(), Config.production(), Config.edge()
    assert (dev.profile, prod.profile, edge.profile) == ("development", "production", "edge")
    assert not dev.require_key and prod.require_key and edge.require_key
    assert not dev.persistence and prod.persistence and edge.persistence
    assert dev.log_level == "DEBUG" and prod.log_level == "INFO"
    assert dev.probe_interval < prod.probe_interval < edge.probe_interval
    # edge: longer suspicion, smaller batches, less memory
    assert edge.suspicion_timeouts(16)[0] > prod.suspicion_timeouts(16)[0]
    assert edge.max_rumours_per_message < prod.max_rumours_per_message
    assert edge.chunk_entries < prod.chunk_entries
    assert edge.anti_entropy_budget_bytes < prod.anti_entropy_budget_bytes
    assert edge.max_frame_bytes < prod.max_frame_bytes
    for profile in PROFILES:
        config = Config.preset(profile)
        typical, worst = config.detection_times(16)
        assert typical <= worst <= config.failure_detection_goal, profile


def test_every_field_is_documented_where_it_is_declared() -> None:
    source = (Path(__file__).parents[2] / "foundation_p2p" / "config.py").read_text()
    for name in Config.__dataclass_fields__:
        declared = source.index(f"\n    {name}: ")
        following = source[declared:].split("\n")[2]  # the line after the declaration
        assert following.strip().startswith('"""'), f"{name} has no docstring"


def test_overrides_and_replace_are_validated() -> None:
    assert Config.edge(probe_interval=3).probe_interval == 3.0  # an int is a fine float
    assert Config.production(seeds=["10.0.0.1:7946"]).seeds == ("10.0.0.1:7946",)
    with pytest.raises(ConfigError) as caught:
        Config.development().replace(probe_interval=-1.0)
    assert caught.value.field == "probe_interval"


@pytest.mark.parametrize(
    ("changes", "field", "accepted"),
    [
        ({"probe_intervall": 1.0}, "probe_intervall", "probe_interval"),
        ({"probe_interval": "fast"}, "probe_interval", "a number"),
        ({"probe_interval": True}, "probe_interval", "a number"),
        ({"fanout": 2.5}, "fanout", "an int"),
        ({"require_key": "yes"}, "require_key", "true or false"),
        ({"dns_name": 5}, "dns_name", "a string"),
        ({"seeds": "10.0.0.1:7946"}, "seeds", "a list of strings"),
        ({"seeds": [7946]}, "seeds[0]", "a string"),
        ({"probe_interval": -1.0}, "probe_interval", ">= 0"),
        ({"discovery_interval": 0.0}, "discovery_interval", "> 0"),
        ({"anti_entropy_interval": float("inf")}, "anti_entropy_interval", "finite"),
        ({"probe_timeout": 5.0}, "probe_timeout", "probe_interval"),
        ({"suspicion_mult": 0}, "suspicion_mult", ">= 1"),
        ({"seeds": ["10.0.0.1:7946", "10.0.0.2"]}, "seeds[1]", "host:port"),
        ({"seeds": ["10.0.0.1:0"]}, "seeds[0]", "port 1-65535"),
        ({"seeds": ["10.0.0.1:99999"]}, "seeds[0]", "host:port"),
        ({"listen": "nowhere"}, "listen", "host:port"),
        ({"consul_address": "consul"}, "consul_address", "host:port"),
        ({"dns_nameservers": ["dns.example"]}, "dns_nameservers[0]", "IP address"),
        ({"dns_name": "peers..example"}, "dns_name", "a DNS name"),
        ({"dns_name": "-peers.example"}, "dns_name", "a DNS name"),
        ({"discovery": "zookeeper"}, "discovery", "'consul'"),
        ({"log_level": "LOUD"}, "log_level", "'DEBUG'"),
        ({"extra": [1]}, "extra", "a table"),
    ],
)
def test_bad_values_name_the_field_and_what_it_accepts(
    changes: dict[str, object], field: str, accepted: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.production(**changes)
    assert caught.value.field == field
    assert caught.value.accepted is not None and accepted in caught.value.accepted
    assert field in str(caught.value)


def test_an_unknown_profile_lists_the_profiles() -> None:
    with pytest.raises(ConfigError) as caught:
        Config.preset("staging")
    assert caught.value.field == "profile"
    assert all(name in str(caught.value) for name in ("development", "production", "edge"))


def test_from_env_reads_foundation_variables() -> None:
    env = {
        "FOUNDATION_PROFILE": "edge",
        "FOUNDATION_SEEDS": "10.0.0.1:7946, 10.0.0.2:7946",
        "FOUNDATION_PROBE_INTERVAL": "3",
        "FOUNDATION_FANOUT": "1",
        "FOUNDATION_PERSISTENCE": "off",
        "FOUNDATION_DATA_DIR": "/var/lib/foundation",
        "FOUNDATION_K8S_SERVICE": "gossip",  # read by environment detection, not a field
        "PATH": "/usr/bin",
    }
    config = Config.from_env(env)
    assert config.profile == "edge"
    assert config.seeds == ("10.0.0.1:7946", "10.0.0.2:7946")
    assert config.probe_interval == 3.0 and config.fanout == 1
    assert config.persistence is False and config.data_dir == "/var/lib/foundation"
    assert Config.from_env({}).profile == "development"
    assert Config.from_env({"FOUNDATION_KEY_FILE": "/etc/k"}).profile == "production"


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"FOUNDATION_PROBE_INTERVALL": "1"}, "probe_intervall"),
        ({"FOUNDATION_PROBE_INTERVAL": "soon"}, "probe_interval"),
        ({"FOUNDATION_FANOUT": "2.5"}, "fanout"),
        ({"FOUNDATION_REQUIRE_KEY": "maybe"}, "require_key"),
        ({"FOUNDATION_PROBE_INTERVAL": "-2"}, "probe_interval"),
        ({"FOUNDATION_SEEDS": "10.0.0.1:7946,oops"}, "seeds[1]"),
        ({"FOUNDATION_PROFILE": "staging"}, "profile"),
    ],
)
def test_bad_environment_is_a_config_error(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env)
    assert caught.value.field == field


def test_from_file_reads_toml(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        'profile = "edge"\n'
        'seeds = ["10.0.0.1:7946"]\n'
        "probe_interval = 4\n"
        'key_file = "/etc/foundation/key"\n'
        "[extra]\n"
        'site = "plant-7"\n'
    )
    config = Config.from_file(path)
    assert config.profile == "edge" and config.probe_interval == 4.0
    assert config.seeds == ("10.0.0.1:7946",) and config.extra == {"site": "plant-7"}
    (tmp_path / "default.toml").write_text("")
    assert Config.from_file(tmp_path / "default.toml") == Config.production()


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("probe_intervall = 1.0\n", "probe_intervall", "did you mean 'probe_interval'"),
        ('probe_interval = "1s"\n', "probe_interval", "a number"),
        ("gossip_interval = -0.5\n", "gossip_interval", ">= 0"),
        ('seeds = ["10.0.0.1:7946", "host-without-port"]\n', "seeds[1]", "host:port"),
        ("profile = 3\n", "profile", "one of"),
        ("[timers]\nprobe_interval = 1.0\n", "timers", "top-level"),
        ("probe_interval = = 1\n", None, "not valid TOML"),
    ],
)
def test_bad_files_are_config_errors(
    tmp_path: Path, text: str, field: str | None, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        Config.from_file(path)
    assert caught.value.field == field


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        Config.from_file(tmp_path / "absent.toml")


def test_a_bad_config_stops_the_node_before_it_starts() -> None:
    from foundation_p2p.node import Node

    with pytest.raises(ConfigError, match="edge profile requires a cluster key"):
        Node(cluster="plant-7", config=Config.edge())
    with pytest.raises(ConfigError) as caught:
        Node(cluster="plant-7", config=Config.development(discovery="dns"))
    assert caught.value.field == "dns_name"


def test_node_takes_key_file_listen_seeds_and_data_dir_from_the_config(tmp_path: Path) -> None:
    from foundation_p2p.node import Node
    from transport import generate_key, key_to_text

    key = tmp_path / "cluster.key"
    key.write_text(key_to_text(generate_key()))
    key.chmod(0o600)
    config = Config.production(
        key_file=str(key),
        listen="127.0.0.1:7946",
        seeds=["127.0.0.1:7947"],
        data_dir=str(tmp_path / "data"),
    )
    node = Node(cluster="plant-7", config=config)
    assert node.keyring is not None
    assert node.listen == "127.0.0.1:7946" and node.seeds == ["127.0.0.1:7947"]
    assert node.data_dir == tmp_path / "data"
    assert node.discovery is not None and node.discovery.name == "static"
