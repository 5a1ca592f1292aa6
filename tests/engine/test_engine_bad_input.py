"""A misbehaving peer: every bad message is dropped with a RemoteProtocolError event and a
counter, and the engine's own state stays valid."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdts import AWORSet, LWWMap, PNCounter
from foundation_p2p.engine import (
    Engine,
    ProtocolErrorEvent,
    RemoteProtocolError,
    decode,
    encode,
)
from foundation_p2p.engine.codec import PROTOCOL_VERSION
from foundation_p2p.engine.messages import (
    Ack,
    Gossip,
    Ping,
    PingReq,
    PushAck,
    ReplicaDelta,
    ReplicaDigest,
    Rumour,
    SyncDelta,
    SyncDigest,
)
from foundation_p2p.engine.replication import encode_delta


def refusals(outputs):
    """The protocol-error events among an engine's outputs."""
    return [o for o in outputs if isinstance(o, ProtocolErrorEvent)]


@pytest.fixture
def pair(engine_net):
    net = engine_net(["a", "b", "c"])
    net.join_all("a")
    net.run(3.0)
    hits = net["a"].replica("hits", PNCounter)
    net.take("a", net["a"].local_write("hits", hits.increment(5), net.now))
    net.run(1.0)
    assert net["b"].replication.replicas["hits"].value == 5
    return net


def snapshot(engine):
    """Everything a refused message must leave untouched."""
    return (
        {name: r.to_wire() for name, r in engine.replication.replicas.items()},
        engine.membership.table.to_wire(),
        engine.incarnation,
    )


def test_unknown_message_type_is_refused_by_the_codec():
    body = msgpack.packb([PROTOCOL_VERSION, 99, "x"])
    with pytest.raises(RemoteProtocolError) as info:
        decode(body)
    assert info.value.reason == "unknown_type"


def test_another_protocol_version_is_refused_naming_both():
    body = msgpack.packb([PROTOCOL_VERSION + 1, 1, 1, "b", []])
    expected = f"protocol {PROTOCOL_VERSION + 1}, we speak {PROTOCOL_VERSION}"
    with pytest.raises(RemoteProtocolError, match=expected):
        decode(body)


@pytest.mark.parametrize(
    "fields",
    [
        [1, "seq-is-not-an-int", "b", []],  # ping with a str seq
        [1, -1, "b", []],  # negative seq
        [2, 1, "not-a-list"],  # ack rumours
        [4, 0, [["hits", "pncounter"]], True, []],  # digest entry missing a field
        [5, 0, [["hits", "pncounter", "not-bytes"]], "", 0, 0, []],  # delta payload not bytes
        [5, 0, [], "", 0, 9999, []],  # absurd hop count
        [5, 0, [["hits", 99, b"\x01"]], "", 0, 0, []],  # type tag index past the table
        [5, 0, [["hits", -1, b"\x01"]], "", 0, 0, []],  # negative type tag index
        [1, 1, "b", [["x", 1, "zombie", "", {}, ""]]],  # unknown member status
        [1, 1, "b", [["x", 1, "alive", "", {1: "int key"}, ""]]],  # metadata key not a str
    ],
)
def test_wrong_field_types_are_refused_by_the_codec(fields):
    with pytest.raises(RemoteProtocolError) as info:
        decode(msgpack.packb([PROTOCOL_VERSION, *fields], strict_types=False))
    assert info.value.reason == "malformed"


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_remote_protocol_error(body):
    try:
        decode(body)
    except RemoteProtocolError:
        pass


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=5)
    | st.binary(max_size=5)
)


@given(
    st.integers(0, 9),
    st.lists(st.recursive(SCALARS, lambda c: st.lists(c, max_size=6), max_leaves=20), max_size=8),
)
def test_random_message_shapes_raise_only_remote_protocol_error(code, fields):
    body = msgpack.packb([PROTOCOL_VERSION, code, *fields])
    try:
        message = decode(body)
    except RemoteProtocolError:
        return
    assert decode(encode(message)) == message


def test_every_message_round_trips_through_the_codec():
    rumour = Rumour("n1", 3, "suspect", "10.0.0.1:7946", {"zone": "a"}, "n2")
    messages = [
        Ping(1, "b", (rumour,)),
        Ack(2, (rumour,)),
        PingReq(3, "c"),
        SyncDigest(1_000, (ReplicaDigest("hits", "pncounter", [{"a": 1}, {}]),), False),
        SyncDelta(1_000, (ReplicaDelta("hits", "pncounter", b"\x01\x02"),), "a", 7, 3),
        SyncDelta(1_000, (ReplicaDelta("x", "not-in-the-tag-table", b""),), "", 8, 1),
        PushAck("a", 7),
        Gossip((rumour,)),
    ]
    for message in messages:
        assert decode(encode(message)) == message


def test_a_ping_for_another_node_is_refused(pair):
    before = snapshot(pair["b"])
    outputs = pair["b"].receive(pair.now, "a", Ping(1, "someone-else"))
    assert [e.reason for e in refusals(outputs)] == ["misdirected"]
    assert pair["b"].counters["refused.misdirected"] == 1
    assert snapshot(pair["b"]) == before


def test_a_member_claiming_another_members_address_is_refused(pair):
    impostor = Rumour("c", 50, "alive", "evil:6666")
    outputs = pair["b"].receive(pair.now, "a", Gossip((impostor,)))
    assert [e.reason for e in refusals(outputs)] == ["address_conflict"]
    assert pair["b"].membership.table.get("c").address == "c"


def test_someone_claiming_to_be_us_is_refuted(pair):
    incarnation = pair["b"].incarnation
    pair["b"].receive(pair.now, "a", Gossip((Rumour("b", incarnation + 3, "alive", "evil"),)))
    assert pair["b"].incarnation == incarnation + 4
    assert pair["b"].membership.table.get("b").address == "b"
    assert pair["b"].counters["conflict.self"] == 1


def test_an_absurd_incarnation_is_refused(pair):
    before = snapshot(pair["b"])
    absurd = Rumour("c", 2**50, "dead", "c")
    outputs = pair["b"].receive(pair.now, "a", Gossip((absurd,)))
    assert [e.reason for e in refusals(outputs)] == ["absurd_incarnation"]
    assert snapshot(pair["b"]) == before
    assert pair["b"].members()["c"] == "alive"


def test_a_stale_rumour_changes_nothing(pair):
    pair["c"].membership.refute(3)
    pair.run(2.0)
    before = snapshot(pair["b"])
    outputs = pair["b"].receive(pair.now, "a", Gossip((Rumour("c", 1, "dead", "c"),)))
    assert not refusals(outputs)
    assert snapshot(pair["b"]) == before


def test_a_future_dated_message_is_refused(pair):
    before = snapshot(pair["b"])
    far_future = int((pair.now + 3600) * 1000)
    delta = AWORSet("a")
    payload = encode_delta(delta.add("x"))
    message = SyncDelta(far_future, (ReplicaDelta("things", "aworset", payload),))
    outputs = pair["b"].receive(pair.now, "a", message)
    assert [e.reason for e in refusals(outputs)] == ["future_dated"]
    assert snapshot(pair["b"]) == before


def test_a_delta_for_a_replica_of_another_type_is_refused(pair):
    before = snapshot(pair["b"])
    wrong = AWORSet("a")
    message = SyncDelta(0, (ReplicaDelta("hits", "aworset", encode_delta(wrong.add("x"))),))
    outputs = pair["b"].receive(pair.now, "a", message)
    assert [e.reason for e in refusals(outputs)] == ["type_mismatch"]
    assert snapshot(pair["b"]) == before


def test_a_corrupt_delta_is_refused_and_the_rest_of_the_message_applied(pair):
    good = LWWMap("a")
    good_payload = encode_delta(good.set("k", 1, pair["a"].timestamp(pair.now)))
    message = SyncDelta(
        0,
        (
            ReplicaDelta("hits", "pncounter", b"\xc1garbage"),
            ReplicaDelta("config", "lwwmap", good_payload),
            ReplicaDelta("mystery", "no-such-type", b"\x90"),
        ),
    )
    outputs = pair["b"].receive(pair.now, "a", message)
    assert sorted(e.reason for e in refusals(outputs)) == ["bad_delta", "unknown_replica_type"]
    assert pair["b"].replication.replicas["hits"].value == 5
    assert pair["b"].replication.replicas["config"].value == {"k": 1}


def test_a_malformed_digest_is_refused_without_harm(pair):
    before = snapshot(pair["b"])
    message = SyncDigest(0, (ReplicaDigest("hits", "pncounter", "not a digest"),), True)
    outputs = pair["b"].receive(pair.now, "a", message)
    assert [e.reason for e in refusals(outputs)] == ["bad_digest"]
    assert snapshot(pair["b"]) == before


def test_a_message_claiming_to_come_from_ourselves_is_refused(pair):
    outputs = pair["b"].receive(pair.now, "b", Ping(1, "b"))
    assert [e.reason for e in refusals(outputs)] == ["self_source"]


def test_the_engine_keeps_working_after_every_kind_of_refusal(pair):
    for message in (
        Ping(1, "zzz"),
        Gossip((Rumour("c", 2**60, "dead"),)),
        SyncDigest(0, (ReplicaDigest("hits", "lwwmap", {}),), True),
        SyncDelta(0, (ReplicaDelta("hits", "pncounter", b"\xff"),)),
    ):
        pair.take("b", pair["b"].receive(pair.now, "a", message))
    hits = pair["b"].replica("hits", PNCounter)
    pair.take("b", pair["b"].local_write("hits", hits.increment(1), pair.now))
    pair.run(2.0)
    assert pair["a"].replication.replicas["hits"].value == 6
    assert pair["b"].counters["refused.type_mismatch"] == 1


def test_the_engine_rejects_a_bad_node_id():
    from foundation_p2p.engine import LocalProtocolError

    with pytest.raises(LocalProtocolError):
        Engine("")
