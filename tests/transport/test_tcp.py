"""The TCP transport on 127.0.0.1: exchange, batching, refusals, bad input, one connection per
pair, bounded queues, reconnection. Every wait is bounded; every transport and socket is closed."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest

from transport import (
    HandshakeError,
    Keyring,
    Limits,
    Transport,
    encode_frame,
    generate_key,
    parse_address,
)
from transport.tcp import _CLOSED

pytestmark = [
    pytest.mark.timeout(60),
    # An unclosed socket or transport shows up as a ResourceWarning raised in a finalizer.
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]

KEY = generate_key()
OTHER_KEY = generate_key()
FAST = Limits(handshake_timeout=1.0, reconnect_initial=0.02, reconnect_max=0.1)


@dataclass
class Node:
    """A transport and everything its callbacks reported."""

    transport: Transport
    address: str = ""
    frames: list[tuple[str, bytes]] = field(default_factory=list)
    ups: list[tuple[str, str]] = field(default_factory=list)
    downs: list[str] = field(default_factory=list)
    refusals: list[tuple[str, str]] = field(default_factory=list)

    def bodies_from(self, peer: str) -> list[bytes]:
        return [body for sender, body in self.frames if sender == peer]


Make = Callable[..., Awaitable[Node]]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    """Builds started transports on 127.0.0.1; closes every one of them afterwards."""
    made: list[Node] = []

    async def build(
        node_id: str,
        *,
        cluster: str = "plant",
        protocol: int = 1,
        keyring: Keyring | None = None,
        limits: Limits = FAST,
        listen: str = "127.0.0.1:0",
        start: bool = True,
    ) -> Node:
        holder: list[Node] = []
        transport = Transport(
            node_id,
            cluster,
            protocol,
            keyring=keyring,
            limits=limits,
            on_frame=lambda peer, body: holder[0].frames.append((peer, body)),
            on_peer_up=lambda peer, address: holder[0].ups.append((peer, address)),
            on_peer_down=lambda peer: holder[0].downs.append(peer),
            on_refused=lambda reason, detail: holder[0].refusals.append((reason, detail)),
        )
        node = Node(transport)
        holder.append(node)
        made.append(node)
        if start:
            node.address = await transport.start(listen)
        return node

    yield build
    for node in made:
        await asyncio.wait_for(node.transport.close(), 5)
        assert not node.transport._connections, "a connection outlived close()"
    gc.collect()  # so a leaked socket warns inside this test, not a later one


async def eventually(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait until `condition()` is true, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def exchange(a: Node, b: Node, tag: bytes = b"ping") -> None:
    """a and b, already connected, each deliver a frame to the other."""
    before_a, before_b = len(a.bodies_from(b.transport.node_id)), len(b.frames)
    assert a.transport.send(b.transport.node_id, tag + b" from a", b.address)
    assert b.transport.send(a.transport.node_id, tag + b" from b", a.address)
    await eventually(
        lambda: len(b.frames) > before_b and len(a.bodies_from(b.transport.node_id)) > before_a
    )


# -- exchanging frames --------------------------------------------------------------------------


async def test_two_transports_connect_and_exchange_frames(make: Make) -> None:
    a, b = await make("a"), await make("b")
    assert await asyncio.wait_for(a.transport.connect(b.address), 5) == "b"
    await eventually(lambda: b.ups)
    assert a.ups == [("b", b.address)] and b.ups == [("a", a.address)]
    assert a.transport.peers() == {"b": b.address} and b.transport.peers() == {"a": a.address}
    assert a.transport.send("b", b"hello b")
    assert b.transport.send("a", b"hello a")  # the address was learned from the handshake
    await eventually(lambda: a.frames and b.frames)
    assert a.frames == [("b", b"hello a")] and b.frames == [("a", b"hello b")]


async def test_three_transports_dial_each_other_on_send(make: Make) -> None:
    nodes = [await make(name) for name in ("a", "b", "c")]
    for sender in nodes:
        for receiver in nodes:
            if sender is not receiver:
                body = f"{sender.transport.node_id}->{receiver.transport.node_id}".encode()
                assert sender.transport.send(receiver.transport.node_id, body, receiver.address)
    await eventually(lambda: all(len(node.frames) == 2 for node in nodes))
    for node in nodes:
        me = node.transport.node_id
        assert sorted(body for _, body in node.frames) == sorted(
            f"{other}->{me}".encode() for other in ("a", "b", "c") if other != me
        )
        assert len(node.transport.peers()) == 2
    await eventually(lambda: all(len(node.transport._connections) == 2 for node in nodes))


async def test_sealed_transports_exchange_frames_across_a_key_rotation(make: Make) -> None:
    a = await make("a", keyring=Keyring(KEY, [OTHER_KEY]))
    b = await make("b", keyring=Keyring(KEY))
    await a.transport.connect(b.address)
    await exchange(a, b, b"k1")
    assert a.transport.keyring is not None and b.transport.keyring is not None
    b.transport.keyring.install(OTHER_KEY)
    a.transport.keyring.use(OTHER_KEY)
    await exchange(a, b, b"k2")
    b.transport.keyring.use(OTHER_KEY)
    b.transport.keyring.remove(KEY)
    await exchange(a, b, b"k2 only")
    assert not a.refusals and not b.refusals


async def test_batching_delivers_10k_frames_in_order_in_few_writes(make: Make) -> None:
    a, b = await make("a"), await make("b")
    await a.transport.connect(b.address)
    (connection,) = a.transport._connections
    writes = 0
    assert connection.transport is not None
    real_write = connection.transport.write

    def counting_write(data: Any) -> None:
        nonlocal writes
        writes += 1
        real_write(data)

    connection.transport.write = counting_write  # type: ignore[method-assign]
    bodies = [i.to_bytes(4, "big") * 4 for i in range(10_000)]
    for body in bodies:  # all in one loop turn
        assert a.transport.send("b", body)
    await eventually(lambda: len(b.frames) == 10_000)
    assert b.bodies_from("a") == bodies
    assert writes <= 5, f"{writes} writes for 10k frames queued in one turn"


async def test_send_now_writes_in_the_call_and_queues_without_a_connection(make: Make) -> None:
    a, b = await make("a"), await make("b")
    await a.transport.connect(b.address)
    (connection,) = a.transport._connections
    assert connection.transport is not None
    written: list[bytes] = []
    real_write = connection.transport.write

    def recording_write(data: Any) -> None:
        written.append(bytes(data))
        real_write(data)

    connection.transport.write = recording_write  # type: ignore[method-assign]
    assert a.transport.send("b", b"queued")  # written at the end of the turn...
    assert a.transport.send_now("b", b"due")  # ...or with this one, at once
    assert written == [encode_frame(b"queued") + encode_frame(b"due")]
    assert a.transport.queued("b") == 0
    assert a.transport.send_now("c", b"x", "127.0.0.1:1")  # no connection: dialed, queued
    assert a.transport.queued("c") == 1
    assert not a.transport.send_now("b", b"x" * (FAST.max_frame_bytes + 1))  # too big: dropped
    await eventually(lambda: b.bodies_from("a") == [b"queued", b"due"])


async def test_zero_length_bodies_are_delivered(make: Make) -> None:
    a, b = await make("a"), await make("b")
    assert a.transport.send("b", b"", b.address)
    assert a.transport.send("b", b"after")
    await eventually(lambda: len(b.frames) == 2)
    assert b.bodies_from("a") == [b"", b"after"]


# -- refusals -----------------------------------------------------------------------------------

REFUSALS = [
    # (case, dialer's settings, reason on the acceptor, words in the acceptor's log line)
    ("cluster", {"cluster": "other"}, "cluster_mismatch", ["'other'", "'plant'"]),
    ("protocol", {"protocol": 2}, "protocol_mismatch", ["version 2", "ours 1"]),
    ("own id", {"node_id": "good"}, "own_id", ["own node id 'good'"]),
    ("wrong key", {"keyring": Keyring(OTHER_KEY)}, "auth_failed", ["cannot open", "key"]),
    ("no key", {}, "key_required", ["unencrypted", "require a key"]),
    ("unexpected key", {"keyring": Keyring(KEY)}, "key_unexpected", ["encrypted", "no key"]),
]


@pytest.mark.parametrize(
    ("case", "dialer", "reason", "words"), REFUSALS, ids=[r[0] for r in REFUSALS]
)
async def test_mismatched_peers_are_refused_with_a_counter_and_a_log_line(
    make: Make,
    caplog: pytest.LogCaptureFixture,
    case: str,
    dialer: dict[str, Any],
    reason: str,
    words: list[str],
) -> None:
    caplog.set_level(logging.WARNING, logger="foundation_p2p.transport")
    keyed = case in ("wrong key", "no key")
    good = await make("good", keyring=Keyring(KEY) if keyed else None)
    friend = await make("friend", keyring=Keyring(KEY) if keyed else None)
    settings = {"node_id": "stranger", **dialer}
    stranger = await make(settings.pop("node_id"), **settings)

    with pytest.raises(HandshakeError) as raised:
        await asyncio.wait_for(stranger.transport.connect(good.address), 5)
    await eventually(lambda: good.transport.counters[reason] == 1)

    assert [r for r, _ in good.refusals] == [reason]
    # The dialer's own line names good.address; the acceptor's names the dialer's socket.
    (line,) = [r.getMessage() for r in caplog.records if good.address not in r.getMessage()]
    assert all(word in line for word in words), line
    assert str(raised.value).startswith("refused connection to") or "refused peer" in str(
        raised.value
    )
    assert stranger.transport.counters[raised.value.reason] == 1  # the dialer refused too
    assert not good.transport.peers() and not stranger.transport.peers()
    assert not good.ups
    await good.transport.connect(friend.address)  # and the good node carries on
    await exchange(good, friend)


async def test_refusal_log_names_the_peer_and_both_values(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="foundation_p2p.transport")
    a = await make("a", cluster="north")
    x = await make("x", cluster="south")
    with pytest.raises(HandshakeError, match="cluster 'north' != ours 'south'") as raised:
        await x.transport.connect(a.address)
    assert raised.value.reason == "cluster_mismatch"
    await eventually(lambda: a.refusals)
    assert any(
        "refused peer 'x' at 127.0.0.1:" in r.getMessage()
        and "cluster 'south' != ours 'north'" in r.getMessage()
        for r in caplog.records
    )


async def test_connecting_to_a_closed_port_is_a_handshake_error(make: Make) -> None:
    a, b = await make("a"), await make("b")
    address = b.address
    await b.transport.close()
    with pytest.raises(HandshakeError, match="cannot reach") as raised:
        await asyncio.wait_for(a.transport.connect(address), 5)
    assert raised.value.reason == "unreachable"
    with pytest.raises(HandshakeError, match="host:port") as raised:
        await a.transport.connect("no-port-here")
    assert raised.value.reason == "bad_address"


# -- bad input from raw sockets -----------------------------------------------------------------


async def raw_client(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = parse_address(address)
    return await asyncio.wait_for(asyncio.open_connection(host, port), 5)


async def raw_handshake(
    address: str, *, node: str = "raw", keyring: Keyring | None = None, cluster: str = "plant"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A hand-made client that completes a good handshake; returns its AAD for later frames."""
    reader, writer = await raw_client(address)
    nonce = os.urandom(16)
    hello = msgpack.packb(
        {
            "protocol": 1,
            "cluster": cluster,
            "node": node,
            "listen": "",
            "nonce": nonce,
            "instance": os.urandom(8),
        }
    )
    writer.write(encode_frame(keyring.seal(hello, cluster.encode()) if keyring else hello))
    size = int.from_bytes(await asyncio.wait_for(reader.readexactly(4), 5), "big")
    reply = await asyncio.wait_for(reader.readexactly(size), 5)
    theirs = msgpack.unpackb(keyring.open(reply, cluster.encode()) if keyring else reply)
    return reader, writer, cluster.encode() + theirs["nonce"] + nonce


async def dropped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The transport closed this raw connection (EOF or reset), within a bounded time."""
    try:
        while await asyncio.wait_for(reader.read(65536), 5):
            pass
    except ConnectionResetError:
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionResetError:
            pass


BAD_CLIENTS = [
    # (case, bytes sent before half-closing or waiting, reason)
    ("garbage", b"\x00\x00\x00\x10this is no hello", "bad_handshake"),
    ("http request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "frame_too_large"),
    ("4 GB length prefix", b"\xff\xff\xff\xff", "frame_too_large"),
    ("truncated frame", b"\x00\x00\x00\x64only ten b", "truncated_frame"),
    ("closes at once", b"", "handshake_eof"),
    ("never handshakes", None, "handshake_timeout"),
]


@pytest.mark.parametrize(
    ("case", "payload", "reason"), BAD_CLIENTS, ids=[c[0] for c in BAD_CLIENTS]
)
async def test_bad_raw_clients_are_dropped_while_a_good_peer_keeps_working(
    make: Make,
    caplog: pytest.LogCaptureFixture,
    case: str,
    payload: bytes | None,
    reason: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="foundation_p2p.transport")
    limits = Limits(handshake_timeout=0.3)
    server, friend = await make("server", limits=limits), await make("friend")
    await server.transport.connect(friend.address)

    reader, writer = await raw_client(server.address)
    if payload is not None:
        writer.write(payload)
        if case in ("truncated frame", "closes at once"):
            writer.write_eof()
    await exchange(server, friend)  # served while the bad client is pending
    await dropped(reader, writer)

    await eventually(lambda: server.transport.counters[reason] == 1)
    assert [r for r, _ in server.refusals] == [reason]
    assert any(r.getMessage().startswith("refused connection from") for r in caplog.records)
    assert server.transport.peers() == {"friend": friend.address}
    await exchange(server, friend, b"still")


@pytest.mark.parametrize("case", ["4 GB prefix", "garbage sealed frame", "tampered frame"])
async def test_bad_frames_after_the_handshake_close_only_that_connection(
    make: Make, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    caplog.set_level(logging.WARNING, logger="foundation_p2p.transport")
    server = await make("server", keyring=Keyring(KEY))
    friend = await make("friend", keyring=Keyring(KEY))
    await server.transport.connect(friend.address)
    keyring = Keyring(KEY)
    reader, writer, aad = await raw_handshake(server.address, node="mallory", keyring=keyring)
    await eventually(lambda: "mallory" in server.transport.peers())
    good = keyring.seal(b"a fine frame", aad)
    writer.write(encode_frame(good))
    await eventually(lambda: server.bodies_from("mallory") == [b"a fine frame"])
    if case == "4 GB prefix":
        writer.write(b"\xff\xff\xff\xff")
        reason = "frame_too_large"
    elif case == "garbage sealed frame":
        writer.write(encode_frame(os.urandom(80)))
        reason = "auth_failed"
    else:
        sealed = bytearray(keyring.seal(b"evil", aad))
        sealed[-1] ^= 1
        writer.write(encode_frame(bytes(sealed)))
        reason = "auth_failed"
    await dropped(reader, writer)
    await eventually(lambda: server.transport.counters[reason] == 1)
    assert server.downs == ["mallory"]
    assert any("refused peer 'mallory'" in r.getMessage() for r in caplog.records)
    assert server.bodies_from("mallory") == [b"a fine frame"]
    await exchange(server, friend)


async def test_a_replayed_frame_from_another_connection_does_not_open(make: Make) -> None:
    """Later frames are bound to their connection's nonces: a recording replays nowhere."""
    server = await make("server", keyring=Keyring(KEY))
    keyring = Keyring(KEY)
    reader, writer, aad = await raw_handshake(server.address, node="m", keyring=keyring)
    recorded = encode_frame(keyring.seal(b"transfer 100", aad))
    writer.write(recorded)
    await eventually(lambda: server.bodies_from("m") == [b"transfer 100"])
    writer.write(encode_frame(keyring.seal(b"reflected", aad[:5] + aad[-16:] + aad[5:-16])))
    await dropped(reader, writer)
    assert server.transport.counters["auth_failed"] == 1

    reader, writer, _ = await raw_handshake(server.address, node="m", keyring=keyring)
    writer.write(recorded)
    await dropped(reader, writer)
    assert server.transport.counters["auth_failed"] == 2
    assert server.bodies_from("m") == [b"transfer 100"]


# -- one connection per pair --------------------------------------------------------------------


@pytest.mark.parametrize("attempt", range(5))
async def test_simultaneous_dials_keep_exactly_one_connection_and_lose_no_frame(
    make: Make, attempt: int
) -> None:
    a, b = await make("a"), await make("b")
    for i in range(50):  # both sides dial in the same loop turn
        assert a.transport.send("b", b"a%d" % i, b.address)
        assert b.transport.send("a", b"b%d" % i, a.address)
    await asyncio.sleep(0)
    for i in range(50, 100):  # and keep sending while the duplicate is resolved
        assert a.transport.send("b", b"a%d" % i)
        assert b.transport.send("a", b"b%d" % i)
        await asyncio.sleep(0.0005 * attempt)
    await eventually(lambda: len(a.frames) == 100 and len(b.frames) == 100)
    assert sorted(b.bodies_from("a")) == sorted(b"a%d" % i for i in range(100))
    assert sorted(a.bodies_from("b")) == sorted(b"b%d" % i for i in range(100))
    await eventually(
        lambda: len(a.transport._connections) == 1 and len(b.transport._connections) == 1
    )
    (kept,) = a.transport._connections
    assert kept.dialed == b.address  # the connection dialed by "a", the smaller id
    assert a.transport.counters["duplicate_connections"] == 1
    assert b.transport.counters["duplicate_connections"] == 1
    assert a.ups == [("b", b.address)] and b.ups == [("a", a.address)]
    assert not a.downs and not b.downs
    await exchange(a, b, b"after")


async def test_connect_to_an_already_connected_peer_replaces_the_connection(make: Make) -> None:
    a, b = await make("a"), await make("b")
    await a.transport.connect(b.address)
    await a.transport.connect(b.address)
    await eventually(
        lambda: len(a.transport._connections) == 1 and len(b.transport._connections) == 1
    )
    assert a.ups == [("b", b.address)] and not a.downs and not b.downs
    await exchange(a, b)


# -- queues, idleness, reconnection -------------------------------------------------------------


async def test_a_full_send_queue_drops_and_counts_instead_of_blocking(make: Make) -> None:
    a = await make("a", limits=Limits(send_queue_frames=10))
    b = await make("b")
    await a.transport.connect(b.address)
    results = [a.transport.send("b", b"%d" % i) for i in range(100)]  # one turn: no flush yet
    assert results == [True] * 10 + [False] * 90
    assert a.transport.counters["dropped_queue_full"] == 90
    await eventually(lambda: len(b.frames) == 10)
    assert b.bodies_from("a") == [b"%d" % i for i in range(10)]


async def test_a_peer_that_stops_reading_never_stalls_the_others(make: Make) -> None:
    server = await make("server", limits=Limits(send_queue_frames=4))
    friend = await make("friend")
    await server.transport.connect(friend.address)
    _, writer, _ = await raw_handshake(server.address, node="sleepy")
    await eventually(lambda: "sleepy" in server.transport.peers())
    big = b"x" * (1024 * 1024)
    accepted = 0
    for _ in range(200):  # until the socket buffers fill and the queue with them
        accepted += server.transport.send("sleepy", big)
        await exchange(server, friend)  # the friend is served all along
        if server.transport.counters["dropped_queue_full"]:
            break
    assert server.transport.counters["dropped_queue_full"] >= 1
    assert accepted < 200
    writer.close()
    await writer.wait_closed()


async def test_sending_needs_an_address_and_a_small_enough_body(make: Make) -> None:
    a = await make("a", limits=Limits(max_frame_bytes=1000))
    assert not a.transport.send("nobody", b"x")
    assert not a.transport.send("a", b"x", a.address)
    b = await make("b", limits=Limits(max_frame_bytes=1000))
    assert not a.transport.send("b", b"x" * 1001, b.address)
    assert a.transport.send("b", b"x" * 1000, b.address)
    await eventually(lambda: b.frames)
    assert a.transport.counters == {
        "dropped_no_address": 1,
        "dropped_self": 1,
        "dropped_too_large": 1,
    }


async def test_an_unreachable_peer_drops_its_queue_and_backs_off(make: Make) -> None:
    a, b = await make("a"), await make("b")
    address = b.address
    await b.transport.close()
    assert a.transport.send("b", b"lost", address)
    await eventually(lambda: a.transport.counters["dropped_unreachable"] == 1)
    assert a.transport.queued("b") == 0
    assert a.transport._peers["b"].next_dial_at > asyncio.get_running_loop().time()


async def test_idle_connections_are_closed(make: Make) -> None:
    limits = Limits(idle_timeout=0.2, handshake_timeout=1.0)
    a, b = await make("a", limits=limits), await make("b", limits=limits)
    await a.transport.connect(b.address)
    await eventually(lambda: a.downs == ["b"] and b.downs == ["a"])
    assert a.transport.counters["idle_closed"] + b.transport.counters["idle_closed"] >= 1
    await exchange(a, b)  # and the next send dials again


async def test_a_peer_that_goes_away_is_reconnected_when_it_comes_back(make: Make) -> None:
    a, b = await make("a"), await make("b")
    await a.transport.connect(b.address)
    await exchange(a, b)
    address = b.address
    await b.transport.close()
    await eventually(lambda: a.downs == ["b"])
    assert a.transport.send("b", b"while away")  # dialed, fails, dropped, backs off
    await eventually(lambda: a.transport.counters["dial_failed"] >= 1)

    b2 = await make("b", listen=address)
    assert b2.address == address

    async def resend_until_delivered() -> None:
        while not b2.frames:
            a.transport.send("b", b"welcome back")
            await asyncio.sleep(0.02)

    await asyncio.wait_for(resend_until_delivered(), 5)
    assert b2.bodies_from("a")[0] == b"welcome back"
    assert a.ups == [("b", address), ("b", address)]
    await exchange(a, b2)


async def test_close_is_idempotent_and_stops_sending(make: Make) -> None:
    a, b = await make("a"), await make("b")
    await a.transport.connect(b.address)
    await asyncio.gather(a.transport.close(), a.transport.close())
    await a.transport.close()
    assert not a.transport.send("b", b"x", b.address)
    await eventually(lambda: b.downs == ["a"])
    assert not a.downs  # no callbacks after close()
    with pytest.raises(HandshakeError):
        await a.transport.connect(b.address)


async def test_frames_queued_just_before_close_are_still_written(make: Make) -> None:
    """close() flushes what was queued (a leave notice sent right before shutting down)."""
    a, b = await make("a"), await make("b")
    await a.transport.connect(b.address)
    for i in range(1000):
        assert a.transport.send("b", b"bye %d" % i)
    await a.transport.close()
    await eventually(lambda: len(b.frames) == 1000)
    assert b.bodies_from("a")[-1] == b"bye 999"


async def test_a_failing_on_frame_callback_does_not_close_the_connection(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await make("a"), await make("b")
    seen: list[bytes] = []

    def on_frame(peer: str, body: bytes) -> None:
        seen.append(body)
        if body == b"boom":
            raise RuntimeError("bug in the layer above")

    b.transport._on_frame = on_frame
    for body in (b"one", b"boom", b"three"):
        a.transport.send("b", body, b.address)
    await eventually(lambda: len(seen) == 3)
    assert "on_frame failed" in caplog.text
    assert b.transport.peers() == {"a": a.address}


async def test_a_restarted_peer_replaces_its_dead_connection_whoever_dialed_it(
    make: Make,
) -> None:
    """Node b restarts while a still holds the connection a dialed (which a would otherwise
    keep, having the smaller id): the new instance's connection wins."""
    a, b = await make("a"), await make("b")
    await a.transport.connect(b.address)
    (old,) = a.transport._connections
    # b's process "dies" without a FIN: a is not told, and its connection stays open.
    (b_side,) = b.transport._connections
    b_side.state = _CLOSED  # silence the old b: it neither reads nor writes from now on
    b2 = await make("b")
    assert await b2.transport.connect(a.address) == "a"
    await eventually(lambda: old not in a.transport._connections or old.state != "open")
    assert a.transport.peers() == {"b": b2.address}
    assert a.ups == [("b", b.address)] and not a.downs
    assert a.transport.send("b", b"to the new b")
    await eventually(lambda: b2.bodies_from("a") == [b"to the new b"])
