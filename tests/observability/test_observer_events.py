"""The driver's observer: telemetry events, traffic by type and replication lag, driven through
two real Drivers and Engines over a hand-delivered wire with a hand-set clock (no sockets, no
sleeping)."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pytest

from crdts import PNCounter
from foundation_p2p import telemetry
from foundation_p2p.engine import MemberUp, decode
from foundation_p2p.engine.messages import SyncDelta
from foundation_p2p.runtime import metrics


def test_member_up_and_anti_entropy_round_carry_the_engines_figures(bench, recorder):
    recorder.attach(telemetry.MEMBER_UP, "foundation_p2p.anti_entropy.round")
    bench.connect()
    ups = recorder.of(telemetry.MEMBER_UP)
    assert ({"live_members": 2}, {"node": "a", "member": "b", "address": "127.0.0.1:7001"}) in ups
    assert any(meta["node"] == "b" and meta["member"] == "a" for _, meta in ups)
    rounds = recorder.of(telemetry.ANTI_ENTROPY_ROUND)
    opening = next(body for src, dst, body in bench.wire.sent if src == "a")
    assert rounds[0] == (
        {"replicas": len(decode(opening).digests), "bytes": len(opening)},
        {"node": "a", "peer": "b"},
    )
    assert bench["a"].engine.counters["anti_entropy.rounds"] == len(
        [meta for _, meta in rounds if meta["node"] == "a"]
    )


def test_replica_merged_reports_the_delta_bytes_and_origin(bench, recorder):
    bench.connect()
    recorder.attach(telemetry.REPLICA_MERGED)
    crdt = bench["a"].engine.replica("hits", PNCounter)
    bench["a"].local_write("hits", crdt.increment(5))
    bench.tick(0.01)  # past push_delay: the push goes out
    pushes = [decode(body) for src, _, body in bench.wire.in_flight if src == "a"]
    payload = sum(
        len(d.payload)
        for m in pushes
        if isinstance(m, SyncDelta)
        for d in m.deltas
        if d.name == "hits"
    )
    bench.deliver()
    assert bench["b"].engine.replica("hits", PNCounter).value == 5
    assert recorder.of(telemetry.REPLICA_MERGED) == [
        ({"bytes": payload}, {"node": "b", "replica": "hits", "origin": "a"})
    ]
    assert payload > 0


def test_a_refused_frame_is_reported_with_its_reason(bench, recorder):
    bench.connect()
    recorder.attach(telemetry.FRAME_REFUSED)
    bench["b"].on_frame("a", b"\xc1 not msgpack")
    [(measurements, metadata)] = recorder.of(telemetry.FRAME_REFUSED)
    reason = metadata["reason"]
    assert measurements == {"count": 1}
    assert metadata["node"] == "b" and metadata["src"] == "a"
    assert bench["b"].engine.counters[f"refused.{reason}"] == 1
    assert bench["b"].observer.messages_in["undecodable"] == 1
    assert bench["b"].observer.events[-1]["kind"] == "refused"


def test_traffic_by_type_matches_the_frames_on_the_wire(bench):
    bench.connect()
    bench.tick(1.0)
    bench.deliver()
    for name, driver in bench.drivers.items():
        sent = [decode(body) for src, _, body in bench.wire.sent if src == name]
        sizes: Counter[str] = Counter()
        for src, _, body in bench.wire.sent:
            if src == name:
                sizes[type(decode(body)).__name__] += len(body)
        assert driver.observer.messages_out == Counter(type(m).__name__ for m in sent)
        assert driver.observer.bytes_out == sizes
        received = [body for src, dst, body in bench.wire.sent if dst == name]
        assert sum(driver.observer.bytes_in.values()) == sum(len(b) for b in received)


def test_replication_lag_counts_our_writes_a_peer_is_not_known_to_hold(bench):
    bench.connect()
    a = bench["a"]
    crdt = a.engine.replica("hits", PNCounter)
    assert a.observer.replication_lag() == {"b": 0.0}  # nothing written yet
    a.local_write("hits", crdt.increment(1))
    written_at = bench.now
    bench.tick(0.01)  # the push goes out, unacknowledged so far
    bench.now += 3.0
    assert a.observer.replication_lag() == {"b": pytest.approx(bench.now - written_at)}
    bench.deliver()  # b merges and acknowledges the push
    assert a.observer.replication_lag() == {"b": 0.0}
    assert a.observer.last_acked()["b"] == bench.now

    bench.wire.drop_deltas_from = {"a"}  # b gets neither our push nor any repair
    a.local_write("hits", crdt.increment(1))
    written_at = bench.now
    bench.run(3.0)
    assert a.engine.members()["b"] == "alive"
    assert a.observer.replication_lag()["b"] == pytest.approx(bench.now - written_at)
    bench.wire.drop_deltas_from = set()
    bench.run(3.0)  # anti-entropy repairs b, then a round finds its copy equal to ours
    assert bench["b"].engine.replica("hits", PNCounter).value == 2
    assert a.observer.replication_lag() == {"b": 0.0}


def test_a_raising_handler_is_detached_and_the_node_carries_on(bench, recorder, caplog):
    def broken(name: Any, measurements: Any, metadata: Any) -> None:
        raise RuntimeError("dashboard bug")

    telemetry.attach(telemetry.MEMBER_UP, broken)
    recorder.attach(telemetry.MEMBER_UP)
    seen: list[Any] = []
    bench["a"].subscribe(seen.append)
    with caplog.at_level(logging.ERROR, logger="foundation_p2p.telemetry"):
        bench.connect()
    assert broken not in telemetry.handlers(telemetry.MEMBER_UP)
    assert "dashboard bug" in caplog.text
    assert MemberUp("b", "127.0.0.1:7001") in seen  # the listeners still got the event
    assert recorder.of(telemetry.MEMBER_UP)  # other handlers too
    assert bench["a"].engine.members()["b"] == "alive"


def test_without_handlers_no_merge_sizes_are_computed(bench):
    assert not telemetry.active(telemetry.REPLICA_MERGED)
    bench.connect()
    crdt = bench["a"].engine.replica("hits", PNCounter)
    bench["a"].local_write("hits", crdt.increment(1))
    bench.tick(0.01)
    bench.deliver()
    assert bench["b"].observer._merge_sizes == {}


def test_lag_survives_forgetting_old_writes_the_peer_lacks(bench, monkeypatch):
    monkeypatch.setattr(metrics, "TRACKED_WRITES", 3)
    bench.connect()
    a = bench["a"]
    crdt = a.engine.replica("hits", PNCounter)
    bench.wire.drop_deltas_from = {"a"}
    first_write_at = bench.now
    for _ in range(6):  # more writes than remembered: the oldest are summarized
        a.local_write("hits", crdt.increment(1))
        bench.run(0.1)
    assert len(a.observer._writes) == 3
    assert a.observer.replication_lag()["b"] == pytest.approx(bench.now - first_write_at)
    bench.wire.drop_deltas_from = set()
    bench.run(3.0)
    assert bench["b"].engine.replica("hits", PNCounter).value == 6
    assert a.observer.replication_lag() == {"b": 0.0}
    assert not a.observer._writes and not a.observer._forgotten


def test_a_dead_peer_falls_further_behind(bench):
    bench.connect()
    a = bench["a"]
    crdt = a.engine.replica("hits", PNCounter)
    bench.crash("b")
    a.local_write("hits", crdt.increment(1))
    written_at = bench.now
    bench.run(20.0)
    assert a.engine.members()["b"] == "dead"
    assert a.observer.replication_lag()["b"] == pytest.approx(bench.now - written_at)


def test_members_the_table_forgot_are_forgotten_by_the_observer_too(bench):
    bench.connect()
    observer = bench["a"].observer
    for i in range(100):  # ids that came and went (say, pods), none of them in the table now
        observer.event(MemberUp(f"gone-{i}", "127.0.0.1:1"))
        observer.last_heard[f"gone-{i}"] = bench.now
    table_size = len(bench["a"].engine.membership.table)
    assert len(observer.member_since) <= 2 * table_size + 17
    assert len(observer.last_heard) <= 2 * table_size + 17
    assert "b" in observer.member_since  # members still in the table are kept
