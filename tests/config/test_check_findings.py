"""`foundation-p2p check`: one test per finding, and the exit codes."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from foundation_p2p import Config
from foundation_p2p.cli import main
from foundation_p2p.environment import Finding, check_readiness
from transport import generate_key, key_to_text

LAN = {"FOUNDATION_DISCOVERY": "none"}  # keep discovery out of the tests that are not about it


def key_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / f"cluster-{mode:o}.key"
    path.write_text(key_to_text(generate_key()))
    path.chmod(mode)
    return path


def review(config: Config, **options: object) -> dict[str, Finding]:
    options.setdefault("environ", LAN)
    findings = asyncio.run(check_readiness(config, **options))  # type: ignore[arg-type]
    return {finding.code: finding for finding in findings}


def ready(tmp_path: Path, **changes: object) -> Config:
    """A production config that passes: key 0600, private bind, writable data dir."""
    values: dict[str, object] = {
        "key_file": str(key_file(tmp_path)),
        "listen": "127.0.0.1:7946",
        "data_dir": str(tmp_path / "data"),
    }
    return Config.production(**{**values, **changes})


def errors(findings: dict[str, Finding]) -> set[str]:
    return {code for code, finding in findings.items() if finding.severity == "error"}


def test_a_ready_config_has_no_error_or_warning(tmp_path: Path) -> None:
    findings = review(ready(tmp_path))
    assert {f.severity for f in findings.values()} <= {"info"}, findings


def test_missing_key_in_production(tmp_path: Path) -> None:
    findings = review(ready(tmp_path, key_file=""))
    assert errors(findings) == {"key.missing"}
    assert "chmod 600" in findings["key.missing"].fix
    assert "key.missing" not in review(Config.development(listen="127.0.0.1:7946"))


def test_world_readable_key_file(tmp_path: Path) -> None:
    path = key_file(tmp_path, 0o644)
    findings = review(ready(tmp_path, key_file=str(path)))
    assert errors(findings) == {"key.world_readable"}
    assert findings["key.world_readable"].fix == f"chmod 600 {path}"
    group = review(ready(tmp_path, key_file=str(key_file(tmp_path, 0o640))))
    assert group["key.group_readable"].severity == "warning"


def test_unreadable_or_invalid_key_file(tmp_path: Path) -> None:
    assert "key.unreadable" in errors(review(ready(tmp_path, key_file=str(tmp_path / "no"))))
    bad = tmp_path / "bad.key"
    bad.write_text("not base64 at all!")
    bad.chmod(0o600)
    assert errors(review(ready(tmp_path, key_file=str(bad)))) == {"key.invalid"}


@pytest.mark.parametrize("listen", ["0.0.0.0:7946", "[::]:7946"])
def test_bind_on_every_interface_without_a_key(tmp_path: Path, listen: str) -> None:
    config = Config.development(listen=listen)
    findings = review(config)
    assert errors(findings) == {"bind.open_without_key"}
    assert "key_file" in findings["bind.open_without_key"].fix
    assert "bind.open_without_key" not in review(ready(tmp_path, listen=listen))


def test_timers_that_cannot_meet_the_goal(tmp_path: Path) -> None:
    # memberlist LAN timers: at 16 members ~6.3 s with confirmations, ~30.4 s without
    lan = {"probe_interval": 1.0, "probe_timeout": 0.5, "suspicion_mult": 4}
    findings = review(ready(tmp_path, failure_detection_goal=5.0, **lan))
    assert errors(findings) == {"timers.too_slow"}
    assert "probe_interval" in findings["timers.too_slow"].fix
    unconfirmed = review(ready(tmp_path, failure_detection_goal=10.0, **lan))
    assert unconfirmed["timers.slow_unconfirmed"].severity == "warning"
    assert not errors(unconfirmed)
    assert "timers.slow_unconfirmed" not in review(
        ready(tmp_path, failure_detection_goal=31.0, **lan)
    )
    # the cluster size matters: log10(N) stretches the suspicion (~97 s at 10,000 members)
    big = review(ready(tmp_path, failure_detection_goal=60.0, **lan), members=10_000)
    assert big["timers.slow_unconfirmed"].severity == "warning"


def test_data_dir_not_writable(tmp_path: Path) -> None:
    findings = review(ready(tmp_path, data_dir="/proc/foundation-p2p/data"))
    assert errors(findings) == {"data_dir.not_writable"}
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert errors(review(ready(tmp_path, data_dir=str(a_file)))) == {"data_dir.not_a_directory"}
    below = review(ready(tmp_path, data_dir=str(a_file / "sub")))
    assert errors(below) == {"data_dir.not_a_directory"}
    assert not list(tmp_path.glob("data*"))  # the probe left nothing behind
    assert review(ready(tmp_path, data_dir=""))["data_dir.unset"].severity == "warning"


def test_unreachable_seeds(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connection refused
        config = ready(tmp_path, discovery="static", seeds=[f"127.0.0.1:{port}"])
        findings = review(config, timeout=1.0)
    assert findings["discovery.seeds_unreachable"].severity == "warning"
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        seed = f"127.0.0.1:{listening.getsockname()[1]}"
        assert "discovery.seeds_unreachable" not in review(ready(tmp_path, seeds=[seed]))


def test_an_invalid_discovery_setup_is_an_error(tmp_path: Path) -> None:
    findings = review(ready(tmp_path, discovery="dns"))
    assert errors(findings) == {"discovery.invalid"}
    assert "dns_name" in findings["discovery.invalid"].fix


def _toml(path: Path, **values: object) -> Path:
    lines = []
    for name, value in values.items():
        lines.append(f"{name} = {value!r}".replace("'", '"'))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FOUNDATION_DISCOVERY", "none")
    good = ready(tmp_path)
    ok = _toml(
        tmp_path / "ok.toml",
        key_file=good.key_file,
        listen=good.listen,
        data_dir=good.data_dir,
        discovery="none",
    )
    assert main(["check", "--config", str(ok)]) == 0
    bad = _toml(tmp_path / "bad.toml", listen="0.0.0.0:7946", discovery="none")
    assert main(["check", "--config", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "ERROR   key.missing" in out and "ERROR   bind.open_without_key" in out
    assert "fix: " in out and "2 error(s)" in out
    invalid = _toml(tmp_path / "invalid.toml", probe_interval=-1.0)
    assert main(["check", "--config", str(invalid)]) == 2
    assert "probe_interval" in capsys.readouterr().err
