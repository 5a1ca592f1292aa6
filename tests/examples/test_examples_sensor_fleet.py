"""examples/sensor_fleet runs as a user runs it and ends with every reading on the dashboard."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "sensor_fleet" / "sensor_fleet.py"


def test_the_dashboard_holds_every_reading_after_the_partition() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--devices", "4", "--cut-seconds", "2"],
        capture_output=True,
        text=True,
        timeout=45,  # subprocess.run kills the process (by pid) when this passes
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    partitioned = [line for line in lines if line.startswith("partitioned")]
    assert partitioned, result.stdout
    # the cut devices fall behind on the dashboard while the connected ones keep up ...
    assert "dev-1 alive" in partitioned[-1] and "dev-4 alive" not in partitioned[-1]
    # ... and nothing they wrote meanwhile is lost
    assert "every reading present: " in lines[-1]
    assert "dev-4 alive" in next(line for line in lines if line.startswith("after heal"))
