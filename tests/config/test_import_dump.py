"""`foundation-p2p import`: a JSON dump lands in a SharedState of a running cluster, or offline
in a data dir; bad dumps are refused whole."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from foundation_p2p.cli import main
from foundation_p2p.node import Node
from tests.realnodes import fast

DUMP = {"line-3/temperature": 21.5, "line-3/state": "running", "counts": [1, 2, 3], "ok": True}


def dump_file(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "dump.json"
    path.write_text(json.dumps(content))
    return path


async def test_import_into_a_running_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOUNDATION_PROBE_INTERVAL", "0.1")  # --seeds: static discovery
    monkeypatch.setenv("FOUNDATION_PROBE_TIMEOUT", "0.05")
    cluster = f"imp-{uuid.uuid4().hex[:6]}"
    async with Node(cluster=cluster, node_id="keeper", config=fast(), discovery=None) as node:
        argv = ["import", str(dump_file(tmp_path, DUMP)), "--name", "plant"]
        argv += ["--cluster", cluster, "--seeds", node.address, "--timeout", "20"]
        code = await asyncio.to_thread(main, argv)
        assert code == 0
        state = node.shared_state("plant")
        await state.wait_for(lambda s: len(s) == len(DUMP), timeout=10.0)
        assert state.to_dict() == DUMP


async def test_offline_import_into_a_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "node"
    argv = ["import", str(dump_file(tmp_path, DUMP)), "--name", "plant", "--data-dir", str(data)]
    argv += ["--cluster", "imp"]
    assert await asyncio.to_thread(main, argv) == 0
    async with Node(cluster="imp", config=fast(), discovery=None, data_dir=data) as node:
        assert node.shared_state("plant").to_dict() == DUMP


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "expected an object"),
        (json.dumps({"fine": 1, "huge": 2**70}), "'huge': int"),
    ],
)
def test_bad_dumps_are_refused_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    data = tmp_path / "node"
    code = main(["import", str(path), "--name", "plant", "--data-dir", str(data)])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not data.exists()  # refused before any node started


def test_no_peer_and_no_data_dir_imports_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FOUNDATION_DISCOVERY", "none")
    code = main(["import", str(dump_file(tmp_path, DUMP)), "--name", "x", "--timeout", "0.2"])
    assert code == 1
    assert "no peer" in capsys.readouterr().err
