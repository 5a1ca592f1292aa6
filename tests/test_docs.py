"""Every ```python block in README.md and docs/ runs, and the benchmarks run to completion."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def _blocks() -> list[tuple[str, int, str]]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((str(path.relative_to(ROOT)), line, match.group(1)))
    return found


BLOCKS = _blocks()


def test_docs_have_python_blocks() -> None:
    """The extractor finds the blocks (so the test below cannot pass by finding none)."""
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize(("path", "line", "code"), BLOCKS, ids=[f"{p}:{n}" for p, n, _ in BLOCKS])
def test_python_block_runs(path: str, line: int, code: str) -> None:
    """A documented snippet executes without error (its asserts are its checks)."""
    exec(compile(code, f"{path}:{line}", "exec"), {"__name__": "__doc__"})


def test_crdt_benchmark_runs() -> None:
    """bench/crdts.py --quick prints its full table (speed targets live in the bench, not here)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "crdts.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) >= 14, result.stdout
    assert "YDoc / raw pycrdt" in result.stdout


def test_crdt_example_converges() -> None:
    """examples/crdt_replicas.py ends with every replica equal and every write counted."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "crdt_replicas.py"), "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip().endswith("converged")
