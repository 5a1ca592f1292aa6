"""examples/job_queue runs as a user runs it: every job done, the scheduler moved on a leave."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "job_queue" / "job_queue.py"


def test_every_job_is_done_and_the_scheduler_moves_when_its_node_leaves() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--nodes", "3", "--jobs", "12"],
        capture_output=True,
        text=True,
        timeout=45,  # subprocess.run kills the process (by pid) when this passes
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.count("6 jobs done") == 2, out
    moved = re.search(r"all 12 jobs done; the scheduler moved from (n\d) to (n\d)$", out, re.M)
    assert moved is not None and moved.group(1) != moved.group(2), out
    first_holder = re.search(r"scheduler running on (n\d)", out)
    assert first_holder is not None and first_holder.group(1) == moved.group(1), out
