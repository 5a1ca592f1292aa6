"""The codec packs each rumour once and splices it in: the bytes equal a one-shot msgpack."""

from __future__ import annotations

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from foundation_p2p.engine import decode, encode
from foundation_p2p.engine.codec import PROTOCOL_VERSION
from foundation_p2p.engine.messages import (
    Ack,
    Gossip,
    Ping,
    PingReq,
    ReplicaDelta,
    ReplicaDigest,
    Rumour,
    SyncDelta,
    SyncDigest,
)

names = st.text(min_size=1, max_size=12)
rumours = st.builds(
    Rumour,
    names,
    st.integers(0, 2**63 - 1),
    st.sampled_from(["alive", "suspect", "dead", "left"]),
    st.text(max_size=20),
    st.dictionaries(
        st.text(max_size=5), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5), max_size=3
    ),
    st.text(max_size=12),
)
rumour_lists = st.lists(rumours, max_size=40).map(tuple)


def one_shot(message) -> bytes:
    """The encoding made the plain way: the whole message as one msgpack value."""
    wire = [
        [r.node, r.incarnation, r.status, r.address, dict(r.metadata), r.by]
        for r in message.rumours
    ]
    if isinstance(message, Ping | PingReq):
        fields = [message.seq, message.target, wire]
        code = 1 if isinstance(message, Ping) else 3
    elif isinstance(message, Ack):
        code, fields = 2, [message.seq, wire]
    elif isinstance(message, SyncDigest):
        digests = [[d.name, d.tag, d.digest] for d in message.digests]
        code, fields = 4, [message.sent_ms, digests, message.reply, wire]
    elif isinstance(message, SyncDelta):
        deltas = [[d.name, 3, d.payload] for d in message.deltas]
        code = 5
        fields = [message.sent_ms, deltas, message.origin, message.seq, message.hops, wire]
    else:
        code, fields = 7, [wire]
    return msgpack.packb([PROTOCOL_VERSION, code, *fields], use_bin_type=True)


@given(rumour_lists, st.integers(0, 2**32))
def test_messages_with_rumours_encode_as_one_msgpack_value(carried, seq):
    messages = [
        Ping(seq, "b", carried),
        Ack(seq, carried),
        PingReq(seq, "c", carried),
        SyncDigest(seq, (ReplicaDigest("hits", "pncounter", [{"a": 1}, {}]),), False, carried),
        SyncDelta(seq, (ReplicaDelta("hits", "pncounter", b"\x01"),), "a", 7, 3, carried),
        Gossip(carried),
    ]
    for message in messages:
        body = encode(message)
        assert body == one_shot(message)
        assert encode(message) == body  # again, from the kept rumour encodings
        assert decode(body) == message


def test_a_kept_encoding_is_not_part_of_a_rumours_identity():
    sent = Rumour("n1", 3, "suspect", "a:1", {"zone": "a"}, "n2")
    encode(Gossip((sent,)))
    assert sent.wire is not None
    fresh = Rumour("n1", 3, "suspect", "a:1", {"zone": "a"}, "n2")
    assert fresh == sent and fresh.wire is None
    assert "wire" not in repr(sent)
