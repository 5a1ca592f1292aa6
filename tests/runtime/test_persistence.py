"""Persistence: the write log, snapshots, restart, corruption, backup and restore.

Single-node tests run one real Node on loopback with no peers; the few cluster tests use real
nodes on loopback and wait with a bounded poll, like tests/integration/test_node.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Map

from crdts import AWORSet, GCounter, LWWMap, LWWRegister, MVRegister, ORMap, PNCounter, YDoc
from foundation_p2p.node import Node, NodeError
from foundation_p2p.runtime.persistence import (
    STORE_FILE,
    PersistenceError,
    backup_data_dir,
    checksum,
    read_backup,
    restore_backup,
)
from tests.realnodes import eventually, fast

pytestmark = pytest.mark.timeout(60)


def log_rows(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / STORE_FILE) as db:
        return int(db.execute("SELECT count(*) FROM log").fetchone()[0])


async def started(data_dir: Path | None, **options: Any) -> Node:
    options.setdefault("cluster", "p")
    options.setdefault("config", fast())
    options.setdefault("discovery", None)  # seeds and the persisted peer list only: no mDNS
    node = Node(data_dir=data_dir, **options)
    await node.start()
    return node


def write_every_type(node: Node) -> None:
    node.replica("state/map", LWWMap).set("temperature", 21.5)
    node.replica("state/map", LWWMap).set("gone", 1)
    node.replica("state/map", LWWMap).delete("gone")
    node.replica("hits", PNCounter).increment(7)
    node.replica("hits", PNCounter).decrement(2)
    node.replica("grow", GCounter).increment(3)
    node.replica("online", AWORSet).add("sensor-1")
    node.replica("online", AWORSet).add("sensor-2")
    node.replica("online", AWORSet).remove("sensor-2")
    node.replica("mode", LWWRegister).set("auto")
    node.replica("votes", MVRegister).set("yes")
    node.replica("per-line", ORMap, value_type=PNCounter).update("l3", lambda c: c.increment(4))
    node.replica("doc", YDoc).transact(lambda d: d.get("m", type=Map).update({"a": "x"}))


def values(node: Node) -> dict[str, Any]:
    engine = node.engine
    assert engine is not None
    replicas = engine.replication.replicas
    # a YDoc lists only the roots declared on it: compare documents by their canonical hash
    return {
        name: crdt.fingerprint() if isinstance(crdt, YDoc) else crdt.value
        for name, crdt in replicas.items()
    }


# --- the write log and restart ------------------------------------------------------------


async def test_every_replica_type_survives_a_restart(tmp_path: Path) -> None:
    node = await started(tmp_path)
    write_every_type(node)
    before = values(node)
    await node.flush_durable()
    await node.stop()
    again = await started(tmp_path)
    try:
        assert values(again) == before
        assert again.replica("hits", PNCounter).value == 5
        assert again.replica("doc", YDoc).get("m", Map).to_py() == {"a": "x"}
        again.replica("hits", PNCounter).increment(1)  # a new session writes on top
        assert again.replica("hits", PNCounter).value == 6
    finally:
        await again.stop()


async def test_an_unclean_stop_keeps_every_flushed_write(tmp_path: Path) -> None:
    node = await started(tmp_path)
    for i in range(20):
        node.replica("state/a", LWWMap).set(f"k{i}", i)
    await node.flush_durable()
    await crash(node)
    assert log_rows(tmp_path) == 20
    again = await started(tmp_path)
    try:
        assert again.replica("state/a", LWWMap).value == {f"k{i}": i for i in range(20)}
    finally:
        await again.stop()


async def test_always_commits_each_write_before_it_returns(tmp_path: Path) -> None:
    node = await started(tmp_path, durability="always")
    try:
        for i in range(3):
            node.replica("state/a", LWWMap).set(f"k{i}", i)
            assert log_rows(tmp_path) == i + 1  # seen by another connection at once
    finally:
        await node.stop()


async def test_batch_commits_a_turn_of_writes_together(tmp_path: Path) -> None:
    node = await started(tmp_path)
    try:
        commits = node.counters.get("persistence.commits", 0)
        for i in range(100):
            node.replica("state/a", LWWMap).set(f"k{i}", i)
        assert log_rows(tmp_path) == 0  # not yet: the commit comes once this turn ends
        await node.flush_durable()
        assert log_rows(tmp_path) == 100
        assert node.counters["persistence.commits"] == commits + 1
    finally:
        await node.stop()


async def test_flush_durable_without_a_data_dir_is_refused() -> None:
    node = await started(None)
    try:
        with pytest.raises(NodeError, match="data_dir"):
            await node.flush_durable()
    finally:
        await node.stop()


def test_flush_durable_from_a_thread(tmp_path: Path) -> None:
    from foundation_p2p.runtime.thread import NodeThread

    runner = NodeThread(Node(cluster="p", config=fast(), discovery=None, data_dir=tmp_path)).start()
    try:
        runner.replica("state/a", LWWMap).set("k", "v")
        runner.flush_durable()
        assert log_rows(tmp_path) == 1
        info = runner.backup(str(tmp_path / "b.fp2p"))
        assert list(info.replicas) == ["state/a"]
    finally:
        runner.stop()


async def test_snapshots_bound_the_log_and_restore_everything(tmp_path: Path) -> None:
    node = await started(tmp_path, config=fast(snapshot_log_rows=50))
    try:
        for i in range(600):
            node.replica("state/a", LWWMap).set(f"k{i % 40}", i)
            if i % 10 == 9:
                await node.flush_durable()
                await asyncio.sleep(0)  # the snapshot runs in the next loop turn
                assert log_rows(tmp_path) < 60
        assert node.counters["persistence.snapshots"] >= 10
        expected = node.replica("state/a", LWWMap).value
    finally:
        await node.stop()
    assert log_rows(tmp_path) == 0  # the clean shutdown snapshotted everything
    again = await started(tmp_path)
    try:
        assert again.replica("state/a", LWWMap).value == expected
    finally:
        await again.stop()


def data_dir_bytes(data_dir: Path) -> int:
    return sum(f.stat().st_size for f in data_dir.iterdir() if f.is_file())


async def test_a_state_rewritten_many_times_keeps_its_data_dir_bounded(tmp_path: Path) -> None:
    """Snapshots drop the log and empty the WAL: a state rewritten over and over (its document
    squashes same-key rewrites) keeps a data dir that stops growing."""
    node = await started(tmp_path, config=fast(snapshot_log_rows=20))
    try:
        s = node.shared_state("s")
        sizes: list[int] = []
        for phase in range(4):
            for i in range(150):
                await s.set("reading", f"{phase}-{i}-" + "x" * 2000, durable=True)
            await asyncio.sleep(0)  # a due snapshot runs in the next loop turn
            sizes.append(data_dir_bytes(tmp_path))
        assert node.counters["persistence.snapshots"] >= 25
        assert log_rows(tmp_path) <= 25
        # 600 commits of ~20 KiB of WAL pages each: without the WAL emptied at each snapshot
        # it would climb to SQLite's 4 MiB autocheckpoint size
        assert max(sizes) < 1024 * 1024
        assert s.size_bytes() < 8 * 1024  # same-key rewrites squash in the document too
    finally:
        await node.stop()
    assert data_dir_bytes(tmp_path) < 256 * 1024  # the final snapshot left an empty WAL
    again = await started(tmp_path)
    try:
        assert again.shared_state("s")["reading"].startswith("3-149-")
    finally:
        await again.stop()


async def test_replayed_rows_are_not_dropped_by_the_next_snapshot(tmp_path: Path) -> None:
    node = await started(tmp_path)
    node.replica("state/a", LWWMap).set("k", 1)
    await node.flush_durable()
    await crash(node)  # the write is only in the log
    again = await started(tmp_path)
    assert again.journal is not None
    again.journal.snapshot(())  # compacts the log: the replayed replica must be in the snapshot
    await again.stop()
    third = await started(tmp_path)
    try:
        assert third.replica("state/a", LWWMap).value == {"k": 1}
    finally:
        await third.stop()


async def test_a_restart_keeps_the_id_and_raises_the_incarnation(tmp_path: Path) -> None:
    node = await started(tmp_path)
    first_id = node.node_id
    await node.stop()  # leaving raised it once
    again = await started(tmp_path)
    try:
        assert again.node_id == first_id
        assert again.engine is not None and again.engine.incarnation == 2
    finally:
        await again.stop()


async def test_a_data_dir_of_another_cluster_or_in_use_is_refused(tmp_path: Path) -> None:
    node = await started(tmp_path)
    try:
        with pytest.raises(PersistenceError, match="in use"):
            await started(tmp_path, node_id="other")
    finally:
        await node.stop()
    with pytest.raises(PersistenceError, match="cluster 'p'"):
        await started(tmp_path, cluster="elsewhere")
    again = await started(tmp_path)  # the refusals released the lock
    await again.stop()


# --- cluster: catching up, a wiped data dir, the peer list -------------------------------


async def pair(tmp_path: Path) -> tuple[Node, Node]:
    seed = await started(None, node_id="seed")
    node = await started(tmp_path, node_id="disk", seeds=[seed.address])
    await eventually(lambda: seed.members().get("disk") == "alive")
    await eventually(lambda: node.members().get("seed") == "alive")
    return seed, node


async def test_a_restarted_node_rejoins_higher_and_catches_up(tmp_path: Path) -> None:
    seed, node = await pair(tmp_path)
    try:
        node.replica("state/a", LWWMap).set("mine", 1)
        await node.flush_durable()
        await eventually(lambda: seed.replica("state/a", LWWMap).get("mine") == 1)
        assert node.engine is not None
        old_incarnation = node.engine.incarnation
        await crash(node)  # no farewell, no final snapshot: the peer list came with the join
        await eventually(lambda: seed.members()["disk"] == "dead", 20.0)
        seed.replica("state/a", LWWMap).set("theirs", 2)
        node = await started(tmp_path)  # no seeds: the persisted peer list finds the seed
        assert node.replica("state/a", LWWMap).get("mine") == 1  # before any peer talked
        await eventually(lambda: node.replica("state/a", LWWMap).get("theirs") == 2, 20.0)
        await eventually(lambda: seed.members().get("disk") == "alive", 20.0)
        assert seed.engine is not None
        seen = seed.engine.membership.table.get("disk")
        assert seen is not None and seen.incarnation > old_incarnation
    finally:
        await node.stop()
        await seed.stop()


async def test_a_restart_cut_off_from_its_peers_still_counts_them(tmp_path: Path) -> None:
    """The persisted peers are members again before any of them answers, so a node that comes
    back alone (or with a few others) sees a cluster it has no majority of."""
    from foundation_p2p.services.placement import has_quorum

    seed, node = await pair(tmp_path)
    await crash(node)
    address = seed.address
    await seed.stop()  # the peer is gone while the node restarts
    node = await started(tmp_path)
    try:
        view = node.members()
        assert set(view) == {"disk", "seed"} and view["seed"] in ("alive", "suspect")
        assert node.engine is not None
        member = node.engine.membership.table.get("seed")
        assert member is not None and member.address == address
        assert not has_quorum(view, "disk", node.engine.last_heard, 0.0, 1.0)
        await eventually(lambda: node.members()["seed"] == "dead", 20.0)
    finally:
        await node.stop()


async def test_a_wiped_data_dir_rejoins_empty_and_is_refilled(tmp_path: Path) -> None:
    seed, node = await pair(tmp_path)
    try:
        node.replica("state/a", LWWMap).set("mine", 1)
        node.replica("hits", PNCounter).increment(3)
        await eventually(lambda: seed.replica("hits", PNCounter).value == 3)
        await node.stop(leave=False)
        for path in tmp_path.iterdir():
            path.unlink()
        node = await started(tmp_path, node_id="disk", seeds=[seed.address])
        assert node.engine is not None and "hits" not in node.engine.replication.replicas
        await eventually(lambda: node.replica("hits", PNCounter).value == 3, 20.0)
        await eventually(lambda: node.replica("state/a", LWWMap).get("mine") == 1)
        node.replica("hits", PNCounter).increment(1)  # a fresh session: no slot reused
        await eventually(lambda: seed.replica("hits", PNCounter).value == 4)
    finally:
        await node.stop()
        await seed.stop()


# --- corrupt data files -------------------------------------------------------------------


async def crash(node: Node) -> None:
    """Stop as if the process died: what is committed stays, no final snapshot."""
    assert node.journal is not None
    node.journal.store.close()
    node.journal = None
    await node.stop(leave=False)


async def make_store(data_dir: Path) -> None:
    """A store with a snapshot of 200 keys and 5 more writes in the log."""
    node = await started(data_dir, node_id="disk")
    for i in range(200):
        node.replica("state/a", LWWMap).set(f"key-{i}", "x" * 50)
    await node.stop()
    node = await started(data_dir, node_id="disk")
    for i in range(5):
        node.replica("state/a", LWWMap).set(f"late-{i}", "x" * 50)
    await node.flush_durable()
    await crash(node)
    assert log_rows(data_dir) == 5


def corrupt_garbage(data_dir: Path) -> None:
    (data_dir / STORE_FILE).write_bytes(b"this is not a database at all" * 100)


def corrupt_truncated(data_dir: Path) -> None:
    path = data_dir / STORE_FILE
    data = path.read_bytes()
    assert len(data) > 8192
    path.write_bytes(data[: len(data) // 2])


def corrupt_row(data_dir: Path) -> None:
    with sqlite3.connect(data_dir / STORE_FILE) as db:
        bad = b"\xc1\xc1\xc1"  # not msgpack, with a valid checksum: it fails to decode
        db.execute(
            "INSERT INTO log (name, tag, delta, checksum) VALUES ('state/a', 'lwwmap', ?, ?)",
            (bad, checksum(bad)),
        )


def corrupt_row_value(data_dir: Path) -> None:
    """A value altered in place (as by a flipped bit): it still decodes, but is wrong."""
    with sqlite3.connect(data_dir / STORE_FILE) as db:
        seq, delta = db.execute("SELECT seq, delta FROM log LIMIT 1").fetchone()
        altered = delta.replace(b"xxx", b"xxy")
        assert altered != delta
        db.execute("UPDATE log SET delta = ? WHERE seq = ?", (altered, seq))


def corrupt_snapshot(data_dir: Path) -> None:
    with sqlite3.connect(data_dir / STORE_FILE) as db:
        wire = db.execute("SELECT wire FROM snapshots WHERE name = 'state/a'").fetchone()[0]
        altered = wire.replace(b"key-7", b"key-X")  # still decodes; the data is wrong
        db.execute("UPDATE snapshots SET wire = ? WHERE name = 'state/a'", (altered,))


CORRUPTIONS = {
    "garbage": (corrupt_garbage, "not a readable store"),
    "truncated": (corrupt_truncated, "integrity check failed|not a readable store"),
    "bad-row": (corrupt_row, "log row .* does not decode"),
    "altered-snapshot": (corrupt_snapshot, "snapshot of replica 'state/a': checksum mismatch"),
    "altered-row": (corrupt_row_value, "log row .*: checksum mismatch"),
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
async def test_a_corrupt_store_fails_naming_the_file(tmp_path: Path, kind: str) -> None:
    await make_store(tmp_path)
    corrupt, message = CORRUPTIONS[kind]
    corrupt(tmp_path)
    node = Node(cluster="p", config=fast(), discovery=None, data_dir=tmp_path, node_id="disk")
    with pytest.raises(PersistenceError, match=message) as raised:
        await node.start()
    assert raised.value.path == str(tmp_path / STORE_FILE)
    assert str(tmp_path / STORE_FILE) in str(raised.value)
    assert node.engine is None  # it never started: nothing partial was loaded


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
async def test_start_empty_moves_a_corrupt_store_aside(tmp_path: Path, kind: str) -> None:
    await make_store(tmp_path)
    corrupt, _ = CORRUPTIONS[kind]
    corrupt(tmp_path)
    node = await started(tmp_path, node_id="disk", on_corrupt="start_empty")
    try:
        assert node.engine is not None and node.engine.replication.replicas == {}
        assert node.counters["persistence.corrupt_moved_aside"] == 1
        assert list(tmp_path.glob(f"{STORE_FILE}.corrupt-*"))
        node.replica("state/a", LWWMap).set("new", 1)
        await node.flush_durable()
    finally:
        await node.stop()
    again = await started(tmp_path, node_id="disk")  # the fresh store works
    try:
        assert again.replica("state/a", LWWMap).value == {"new": 1}
    finally:
        await again.stop()


# --- backup and restore -------------------------------------------------------------------


async def test_backup_and_restore_round_trip(tmp_path: Path) -> None:
    node = await started(None)
    write_every_type(node)
    expected = values(node)
    try:
        info = await node.backup(tmp_path / "b.fp2p")
    finally:
        await node.stop()
    assert set(info.replicas) == set(expected)
    restored = Node.restore(tmp_path / "b.fp2p", tmp_path / "new")
    assert restored.replicas == info.replicas
    fresh = await started(tmp_path / "new")
    try:
        assert values(fresh) == expected
        assert fresh.node_id != node.node_id  # a new node, not the old one's identity
    finally:
        await fresh.stop()
    with pytest.raises(PersistenceError, match="already holds replicas"):
        Node.restore(tmp_path / "b.fp2p", tmp_path / "new")


async def test_a_bad_backup_is_refused_naming_the_file(tmp_path: Path) -> None:
    node = await started(None)
    node.replica("state/a", LWWMap).set("k", 1)
    try:
        data = node.backup_bytes()
    finally:
        await node.stop()
    cases = {
        "truncated": (data[: len(data) - 5], "checksum"),
        "garbage": (b"hello" * 20, "bad magic"),
        "flipped": (data[:-3] + bytes([data[-3] ^ 1]) + data[-2:], "checksum"),
    }
    for name, (bad, message) in cases.items():
        path = tmp_path / f"{name}.fp2p"
        path.write_bytes(bad)
        with pytest.raises(PersistenceError, match=message) as raised:
            restore_backup(path, tmp_path / name)
        assert raised.value.path == str(path)
        assert not (tmp_path / name).exists()  # nothing was created


async def test_offline_backup_of_a_data_dir(tmp_path: Path) -> None:
    node = await started(tmp_path / "d")
    write_every_type(node)
    expected = values(node)
    await node.flush_durable()
    await crash(node)  # part of it is only in the log
    info = backup_data_dir(tmp_path / "d", tmp_path / "b.fp2p")
    loaded, _ = read_backup(tmp_path / "b.fp2p")
    held = {
        n: s.fingerprint() if isinstance(s, YDoc) else s.value
        for n, (_, s) in loaded.replicas.items()
    }
    assert held == expected
    assert set(info.replicas) == set(expected)


async def test_backup_from_a_cluster_restores_into_a_fresh_cluster(tmp_path: Path) -> None:
    old = [await started(None, node_id="a0")]
    for i in (1, 2):
        old.append(await started(None, node_id=f"a{i}", seeds=[old[0].address]))
    try:
        for i, node in enumerate(old):
            node.replica("state/line", LWWMap).set(f"from-{i}", i)
            node.replica("hits", PNCounter).increment(i + 1)
        await eventually(lambda: all(n.replica("hits", PNCounter).value == 6 for n in old))
        await eventually(lambda: all(len(n.replica("state/line", LWWMap).value) == 3 for n in old))
        await old[1].backup(tmp_path / "cluster.fp2p")
        expected = values(old[0])
    finally:
        for node in old:
            await node.stop()
    Node.restore(tmp_path / "cluster.fp2p", tmp_path / "b0")
    new = [await started(tmp_path / "b0", cluster="q", node_id="b0")]
    for i in (1, 2):
        new.append(await started(None, cluster="q", node_id=f"b{i}", seeds=[new[0].address]))
    try:
        await eventually(lambda: all(values(n) == expected for n in new), 20.0)
    finally:
        for node in new:
            await node.stop()


# --- the command line and the admin endpoint ----------------------------------------------


async def test_cli_backup_over_http_and_restore(tmp_path: Path) -> None:
    from foundation_p2p.cli import main
    from transport import generate_key, key_to_text

    key = key_to_text(generate_key())
    key_file = tmp_path / "key"
    key_file.write_text(key)
    node = await started(None, key=key, http="127.0.0.1:0")
    try:
        node.replica("state/a", LWWMap).set("k", "v")
        out = tmp_path / "b.fp2p"
        args = ["backup", "--http", node.http_address, "--key-file", str(key_file)]
        code = await asyncio.to_thread(main, [*args, "--out", str(out)])
        assert code == 0
        wrong = tmp_path / "wrong"
        wrong.write_text(key_to_text(generate_key()))
        args = ["backup", "--http", node.http_address, "--key-file", str(wrong)]
        assert await asyncio.to_thread(main, [*args, "--out", str(tmp_path / "x")]) == 1
        assert not (tmp_path / "x").exists()
        assert node.counters["refused.admin_token"] == 1
    finally:
        await node.stop()
    assert main(["restore", "--in", str(out), "--data-dir", str(tmp_path / "d")]) == 0
    assert main(["restore", "--in", str(out), "--data-dir", str(tmp_path / "d")]) == 1
    offline = tmp_path / "offline.fp2p"
    assert main(["backup", "--data-dir", str(tmp_path / "d"), "--out", str(offline)]) == 0
    loaded, _ = read_backup(offline)
    assert loaded.replicas["state/a"][1].value == {"k": "v"}
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"nope")
    assert main(["restore", "--in", str(garbage), "--data-dir", str(tmp_path / "e")]) == 1


def test_cli_node_options_parse() -> None:
    from foundation_p2p.cli import build_parser

    args = build_parser().parse_args(
        ["node", "--data-dir", "/x", "--durability", "always", "--on-corrupt", "start-empty"]
    )
    assert (args.data_dir, args.durability, args.on_corrupt) == ("/x", "always", "start-empty")


def test_bad_options_are_refused() -> None:
    from foundation_p2p.config import ConfigError

    with pytest.raises(ConfigError, match="durability"):
        Node(data_dir="/tmp/x", discovery=None, durability="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="on_corrupt"):
        Node(data_dir="/tmp/x", discovery=None, on_corrupt="shrug")  # type: ignore[arg-type]


def test_cli_node_refuses_a_corrupt_data_dir_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from foundation_p2p.cli import main

    (tmp_path / STORE_FILE).write_bytes(b"garbage" * 100)
    code = main(["node", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0", "--cluster", "p"])
    assert code == 1
    assert f"{tmp_path / STORE_FILE}: not a readable store" in capsys.readouterr().err


async def test_a_bad_logged_yjs_update_fails_naming_the_row(tmp_path: Path) -> None:
    node = await started(tmp_path)
    node.replica("doc", YDoc).transact(lambda d: d.get("m", type=Map).update({"a": "x"}))
    await node.flush_durable()
    await crash(node)
    bad = b"\x05\xff\xff\xff\x01garbage"  # a count and then nonsense: not a Yjs update
    with sqlite3.connect(tmp_path / STORE_FILE) as db:
        db.execute(
            "INSERT INTO log (name, tag, delta, checksum) VALUES ('doc', 'ydoc', ?, ?)",
            (bad, checksum(bad)),
        )
    with pytest.raises(PersistenceError, match="a log row of 'doc' does not decode"):
        await started(tmp_path)


async def test_the_snapshot_timer_compacts_the_log(tmp_path: Path) -> None:
    node = await started(tmp_path, config=fast(snapshot_interval=0.05))
    try:
        node.replica("state/a", LWWMap).set("k", 1)
        await node.flush_durable()
        assert log_rows(tmp_path) == 1
        await eventually(lambda: log_rows(tmp_path) == 0)
        with sqlite3.connect(tmp_path / STORE_FILE) as db:
            names = [row[0] for row in db.execute("SELECT name FROM snapshots")]
        assert names == ["state/a"]
    finally:
        await node.stop()


async def test_a_failing_disk_is_reported_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = await started(tmp_path)
    try:
        assert node.journal is not None
        store = node.journal.store
        real_write = store.write

        def full_disk(*args: Any, **kwargs: Any) -> None:
            raise PersistenceError(store.path, "write failed: database or disk is full")

        monkeypatch.setattr(store, "write", full_disk)
        node.replica("state/a", LWWMap).set("k1", 1)
        with pytest.raises(PersistenceError, match="disk is full"):
            await node.flush_durable()
        assert node.counters["persistence.errors"] == 1
        node.replica("state/a", LWWMap).set("k2", 2)  # the node keeps serving writes
        monkeypatch.setattr(store, "write", real_write)  # space again
        await node.flush_durable()
        assert log_rows(tmp_path) == 2  # the failed batch was kept and committed
    finally:
        await node.stop()
