"""kill -9 a durable writer mid-stream, again and again: every acknowledged write survives.

The writer (tests/runtime/crash_writer.py, run with sys.executable) prints a key only after
`flush_durable()` returned for it; each restart reports what it restored. Seeded: the seed is
printed, and FOUNDATION_CRASH_SEED replays a run.
"""

from __future__ import annotations

import importlib.util
import os
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.timeout(90)  # about 15-25 s: 20 writer starts of ~1 s each

CYCLES = 20


def crash_writer() -> ModuleType:
    path = Path(__file__).parent.parent / "runtime" / "crash_writer.py"
    spec = importlib.util.spec_from_file_location("crash_writer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_acknowledged_durable_write_survives_kill_9(tmp_path: Path) -> None:
    seed = int(os.environ.get("FOUNDATION_CRASH_SEED", random.randrange(1 << 32)))
    print(f"crash test seed: {seed} (replay with FOUNDATION_CRASH_SEED={seed})")
    result = crash_writer().kill_cycles(tmp_path / "data", CYCLES, seed)
    print(
        f"{result.cycles} kills ({result.killed_before_ready} during start/restore), "
        f"{result.acknowledged} acknowledged keys, {result.restored_checks} restores checked, "
        f"{result.seconds:.1f} s, writes through {result.api}"
    )
    assert result.cycles == CYCLES
    assert result.missing == [], f"seed {seed}: acknowledged keys lost: {result.missing[:10]}"
    assert result.acknowledged > CYCLES  # the writer really wrote between kills
    assert result.restored_checks >= CYCLES // 2
