"""examples/partition_test runs as a user runs it: `pytest examples/partition_test` passes (the
netns test skips with its reason where no network lab can be built)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from simulations.netlab import NetLab, NetLabError

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]


def test_the_users_partition_suite_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "examples/partition_test"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=80,  # subprocess.run kills the run (by pid) when this passes
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    try:
        NetLab.check()
        lab = True
    except NetLabError:
        lab = False
    assert ("4 passed" if lab else "3 passed, 1 skipped") in out, out
    if not lab:
        assert "needs a network lab" in out, out
