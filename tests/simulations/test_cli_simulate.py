"""`foundation-p2p simulate`: run a scenario from the command line, with exit codes a CI can use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import simulations.scenarios
from foundation_p2p.cli import main
from simulations.scenarios import SCENARIOS, ScenarioResult


def test_simulate_prints_the_summary_writes_the_report_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A converging scenario exits 0; --report writes the page and prints where."""
    report = tmp_path / "out.html"
    code = main(
        ["simulate", "partition-heal", "--nodes", "5", "--seed", "1", "--report", str(report)]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert report.exists() and "<svg" in report.read_text(encoding="utf-8")
    assert "partition-heal" in out and "verdict" in out and "PASS" in out
    assert str(report) in out


def test_failing_run_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run that did not converge, or whose checkers found a problem, exits 1."""
    real = simulations.scenarios.run_scenario

    def broken(name: str, nodes: int, seed: int) -> ScenarioResult:
        result = real(name, nodes, seed)
        result.checks["no_lost_writes"] = ["n1: write to 'visits' by n0 at 1.000 is missing"]
        return result

    monkeypatch.setattr(simulations.scenarios, "run_scenario", broken)
    assert main(["simulate", "minority-isolation", "--nodes", "3", "--seed", "2"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_unknown_scenario_lists_the_valid_ones_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A typo is a usage error that names every scenario."""
    assert main(["simulate", "partition-hea1"]) == 2
    err = capsys.readouterr().err
    assert "unknown scenario 'partition-hea1'" in err
    for name in SCENARIOS:
        assert name in err


def test_missing_scenario_and_too_few_nodes_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """No scenario, or a cluster too small for one, is a usage error too."""
    assert main(["simulate"]) == 2
    assert main(["simulate", "loss-10", "--nodes", "2"]) == 2
    assert "at least 3 nodes" in capsys.readouterr().err


def test_list_names_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    """--list prints each name with its one-line description."""
    assert main(["simulate", "--list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == list(SCENARIOS)


def test_version_and_bare_command_still_work(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the version; no subcommand prints the help."""
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith("foundation-p2p ")
    assert main([]) == 0
    assert "simulate" in capsys.readouterr().out


def test_cli_imports_the_simulator_only_when_simulating() -> None:
    """The command line loads `simulations` lazily, inside the simulate command."""
    probe = "import sys, foundation_p2p.cli; print('simulations' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
