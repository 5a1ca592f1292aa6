"""Cluster-services benchmark: registry lookup and pick, pub/sub throughput, call latency, and
singleton failover after kill -9, beside a raw asyncio msgpack loop and Eclipse Zenoh.

Run: python -m bench.services [--quick] [--skip-failover] [--no-uvloop]
     (or python bench/services.py); uvloop runs the event loop when installed.

- registry: ns per lookup (a hit, with and without a capability filter) and per pick, on a
  registry of 10,000 instances under 2,000 names, on one node (no network).
- pub/sub: node -> node messages/s with 100-byte payloads. Both Nodes run in this process on
  one event loop (every figure pays for sending and receiving); the publisher yields to the
  loop every 256 messages. Beside it: a raw asyncio loop (length-prefixed msgpack over one TCP
  connection, Protocol-based, the 256 frames joined into one write) and Zenoh
  (`eclipse-zenoh`, two peer sessions with explicit tcp/127.0.0.1 endpoints and multicast
  scouting off, a blocking publisher; its I/O runs on its own Rust threads). Ratios printed.
- call: request/response round trips p50/p99 in microseconds, sequential; beside a raw
  asyncio request/response loop and Zenoh query/reply.
- failover: three node processes on loopback run one singleton; the holder is killed with
  SIGKILL and the time until another process starts it is printed, beside the failure
  detection settings.
Figures are wall-clock on whatever machine runs this; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

# Run as a script, this file's folder heads sys.path and its name would shadow a package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgpack  # noqa: E402

from foundation_p2p import Config  # noqa: E402
from foundation_p2p.node import Node  # noqa: E402
from foundation_p2p.services.registry import Registry  # noqa: E402

PAYLOAD = {"seq": 0, "body": "x" * 80}  # about 100 bytes packed
BATCH = 256
_prefix = struct.Struct(">I")


def run(coroutine: Any) -> Any:
    """asyncio.run, on uvloop when it is installed and not refused."""
    if USE_UVLOOP:
        import uvloop

        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


USE_UVLOOP = False


def fast() -> Config:
    """Development timings, as the services tests use."""
    return Config.development(probe_interval=0.1, probe_timeout=0.05, anti_entropy_interval=0.2)


# --- registry -----------------------------------------------------------------------------------


def bench_registry(entries: int = 10_000, names: int = 2_000, rounds: int = 200_000) -> None:
    """ns/op of lookup and pick on a registry of `entries` instances."""
    from simulations.cluster import SimCluster

    sim = SimCluster(1, seed=1)
    registry = Registry(sim.nodes["n0"], rng=random.Random(1))
    for i in range(entries):
        registry.register_now(f"svc-{i % names}", capabilities={"unit": "C" if i % 2 else "F"})
    registry.lookup("svc-7")  # build the index once
    print(f"\nregistry: {entries} instances under {names} names, one node")
    cases: list[tuple[str, Any]] = [
        ("lookup (hit)", lambda: registry.lookup("svc-7")),
        ("lookup where={'unit': 'C'}", lambda: registry.lookup("svc-7", where={"unit": "C"})),
        ("lookup (miss)", lambda: registry.lookup("nobody")),
        ("pick round_robin", lambda: registry.pick("svc-7")),
        ("pick random", lambda: registry.pick("svc-7", "random")),
        ("pick least_loaded", lambda: registry.pick("svc-7", "least_loaded")),
        ("pick consistent_hash", lambda: registry.pick("svc-7", "consistent_hash", key="user-1")),
    ]
    for label, operation in cases:
        for _ in range(1000):
            operation()
        start = time.perf_counter_ns()
        for _ in range(rounds):
            operation()
        per_op = (time.perf_counter_ns() - start) / rounds
        print(f"  {label:32s} {per_op:8.0f} ns/op")


# --- pub/sub ------------------------------------------------------------------------------------


async def ours_pubsub(count: int) -> float:
    """Messages/s node -> node through node.pubsub."""
    a = Node(cluster="bench", node_id="pub", config=fast())
    await a.start()
    b = Node(cluster="bench", node_id="sub", seeds=[a.address], config=fast())
    await b.start()
    try:
        received = 0
        done = asyncio.Event()

        def on_message(message: Any) -> None:
            nonlocal received
            received += 1
            if received == count:
                done.set()

        b.pubsub.subscribe("bench", on_message)
        while len(a.registry.lookup("sys.pubsub/bench")) < 1:
            await asyncio.sleep(0.01)
        publish = a._cluster_services().messaging.publish_now
        start = time.perf_counter()
        for i in range(count):
            publish("bench", PAYLOAD)
            if i % BATCH == BATCH - 1:
                await asyncio.sleep(0)
        try:
            await asyncio.wait_for(done.wait(), 60)
        except TimeoutError:
            print(f"  (ours: only {received} of {count} arrived)")
        return received / (time.perf_counter() - start)
    finally:
        await b.stop()
        await a.stop()


class _Receiver(asyncio.Protocol):
    """Raw loop receiver: length-prefixed msgpack frames, parsed from one buffer."""

    def __init__(self, on_message: Any) -> None:
        self.buffer = bytearray()
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        offset = 0
        while len(buffer) - offset >= 4:
            (size,) = _prefix.unpack_from(buffer, offset)
            if len(buffer) - offset - 4 < size:
                break
            body = bytes(buffer[offset + 4 : offset + 4 + size])
            offset += 4 + size
            self.on_message(msgpack.unpackb(body), self)
        del buffer[:offset]

    def send(self, value: Any) -> None:
        body = msgpack.packb(value)
        assert self.transport is not None
        self.transport.write(_prefix.pack(len(body)) + body)


async def raw_pubsub(count: int) -> float:
    """Messages/s through a raw asyncio length-prefixed msgpack loop."""
    loop = asyncio.get_running_loop()
    received = 0
    done = asyncio.Event()

    def on_message(message: Any, protocol: _Receiver) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    server = await loop.create_server(lambda: _Receiver(on_message), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(
        lambda: _Receiver(lambda m, p: None), "127.0.0.1", port
    )
    start = time.perf_counter()
    frames = []
    for i in range(count):
        body = msgpack.packb({"topic": "bench", "payload": PAYLOAD})
        frames.append(_prefix.pack(len(body)) + body)
        if i % BATCH == BATCH - 1 or i == count - 1:
            transport.write(b"".join(frames))  # one write per batch, as our transport does
            frames.clear()
            await asyncio.sleep(0)
    await asyncio.wait_for(done.wait(), 60)
    rate = received / (time.perf_counter() - start)
    transport.close()
    server.close()
    return rate


def _zenoh_config(listen: str | None = None, connect: str | None = None) -> Any:
    import zenoh

    config = zenoh.Config()
    config.insert_json5("mode", '"peer"')
    config.insert_json5("scouting/multicast/enabled", "false")
    config.insert_json5("listen/endpoints", f'["{listen}"]' if listen else "[]")
    config.insert_json5("connect/endpoints", f'["{connect}"]' if connect else "[]")
    return config


def zenoh_sessions() -> tuple[Any, Any] | str:
    """Two Zenoh peer sessions joined over loopback, or why there are none."""
    try:
        import zenoh
    except ImportError:
        return "eclipse-zenoh is not installed (pip install eclipse-zenoh)"
    port = random.randrange(20000, 30000)
    first = zenoh.open(_zenoh_config(listen=f"tcp/127.0.0.1:{port}"))
    second = zenoh.open(_zenoh_config(connect=f"tcp/127.0.0.1:{port}"))
    return first, second


def zenoh_pubsub(sessions: tuple[Any, Any], count: int) -> float:
    """Messages/s through Zenoh publisher -> subscriber."""
    first, second = sessions
    received = 0
    done = threading.Event()

    def on_sample(sample: Any) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    subscriber = second.declare_subscriber("bench/pubsub", on_sample)
    time.sleep(0.5)  # let the declaration reach the publisher
    import zenoh

    # BLOCK, not the default DROP: every message must arrive, as with the other two
    publisher = first.declare_publisher(
        "bench/pubsub", congestion_control=zenoh.CongestionControl.BLOCK
    )
    payload = msgpack.packb(PAYLOAD)
    start = time.perf_counter()
    for _ in range(count):
        publisher.put(payload)
    if not done.wait(60):
        print(f"  (zenoh: only {received} of {count} arrived)")
    rate = received / (time.perf_counter() - start)
    publisher.undeclare()
    subscriber.undeclare()
    return rate


# --- call ---------------------------------------------------------------------------------------


def _percentiles(samples: list[float]) -> tuple[float, float]:
    samples.sort()
    return samples[len(samples) // 2] * 1e6, samples[int(len(samples) * 0.99)] * 1e6


async def ours_call(count: int) -> tuple[float, float]:
    """p50/p99 µs of node.call to a handler on another node."""
    a = Node(cluster="bench-call", node_id="caller", config=fast())
    await a.start()
    b = Node(cluster="bench-call", node_id="callee", seeds=[a.address], config=fast())
    await b.start()
    try:
        await b.registry.register("echo", lambda request: request)
        while not a.registry.lookup("echo"):
            await asyncio.sleep(0.01)
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            await a.call("echo", PAYLOAD)
            samples.append(time.perf_counter() - start)
        return _percentiles(samples)
    finally:
        await b.stop()
        await a.stop()


async def raw_call(count: int) -> tuple[float, float]:
    """p50/p99 µs of a raw asyncio request/response over length-prefixed msgpack."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Receiver(lambda message, protocol: protocol.send(message)), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    waiting: list[asyncio.Future[Any]] = []

    def on_reply(message: Any, protocol: _Receiver) -> None:
        waiting.pop(0).set_result(message)

    transport, client = await loop.create_connection(lambda: _Receiver(on_reply), "127.0.0.1", port)
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        future = loop.create_future()
        waiting.append(future)
        client.send(PAYLOAD)
        await future
        samples.append(time.perf_counter() - start)
    transport.close()
    server.close()
    return _percentiles(samples)


def zenoh_call(sessions: tuple[Any, Any], count: int) -> tuple[float, float]:
    """p50/p99 µs of Zenoh get -> queryable reply."""
    first, second = sessions
    queryable = second.declare_queryable(
        "bench/call", lambda query: query.reply(query.key_expr, query.payload)
    )
    time.sleep(0.5)
    payload = msgpack.packb(PAYLOAD)
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        replies = list(first.get("bench/call", payload=payload))
        samples.append(time.perf_counter() - start)
        assert replies and replies[0].ok is not None
    queryable.undeclare()
    return _percentiles(samples)


# --- singleton failover -------------------------------------------------------------------------


async def child(node_id: str, seed: str | None) -> None:
    """A node process for the failover run: prints its address and when it starts the singleton."""
    node = Node(
        cluster="bench-failover", node_id=node_id, seeds=[seed] if seed else [], config=fast()
    )
    await node.start()
    print(f"ADDRESS {node.address}", flush=True)

    async def run() -> None:
        print(f"RUNNING {node_id} {time.time():.6f}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            print(f"STOPPED {node_id}", flush=True)

    node.singleton("bench-singleton", run)
    await asyncio.Event().wait()


def failover(rounds: int) -> None:
    """Seconds from SIGKILL of the singleton's holder to its start in another process."""
    config = fast()
    shortest, longest = config.suspicion_timeouts(3)
    print(
        f"\nsingleton failover after kill -9 (3 processes, probe_interval"
        f" {config.probe_interval} s, suspicion {shortest:.2f}-{longest:.2f} s)"
    )
    results = [r for r in (failover_round() for _ in range(rounds)) if r is not None]
    if results:
        print(
            f"  {len(results)} runs: median {statistics.median(results):.2f} s,"
            f" max {max(results):.2f} s"
        )


def failover_round() -> float | None:
    """One run: start three node processes, kill the holder, time the takeover."""
    processes: dict[str, subprocess.Popen[str]] = {}
    lines: list[tuple[str, str]] = []
    lock = threading.Condition()

    def read(name: str, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with lock:
                lines.append((name, line.strip()))
                lock.notify_all()

    def wait_for(predicate: Any, timeout: float, start: int = 0) -> Any:
        deadline = time.time() + timeout
        with lock:
            while True:
                for entry in lines[start:]:
                    if predicate(entry):
                        return entry
                if time.time() > deadline:
                    return None
                lock.wait(0.05)

    try:
        seed = None
        for name in ("p0", "p1", "p2"):
            command = [sys.executable, __file__, "--child", name]
            if seed:
                command += ["--seed", seed]
            process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            processes[name] = process
            threading.Thread(target=read, args=(name, process), daemon=True).start()
            found = wait_for(lambda e, n=name: e[0] == n and e[1].startswith("ADDRESS"), 20)
            if found is None:
                raise RuntimeError(f"{name} did not start")
            seed = seed or found[1].split()[1]
        if wait_for(lambda e: e[1].startswith("RUNNING"), 20) is None:
            raise RuntimeError("no process ran the singleton")
        time.sleep(2.0)  # steady state: every member alive, any early handover done
        with lock:
            running = {}
            for name, line in lines:
                if line.startswith(("RUNNING", "STOPPED")):
                    running[name] = line.startswith("RUNNING")
            holders = [name for name, up in running.items() if up]
            seen = len(lines)
        if len(holders) != 1:
            print(f"  not one holder before the kill: {holders}")
            return None
        holder = holders[0]
        killed_at = time.time()
        os.kill(processes[holder].pid, signal.SIGKILL)
        second = wait_for(lambda e: e[1].startswith("RUNNING") and e[0] != holder, 30, seen)
        if second is None:
            print("  no other process took over within 30 s")
            return None
        return float(second[1].split()[2]) - killed_at
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
            process.wait(10)


# --- main ---------------------------------------------------------------------------------------


def main() -> None:
    """Parse arguments and run every part."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and rounds")
    parser.add_argument("--skip-failover", action="store_true", help="no node processes")
    parser.add_argument("--no-uvloop", action="store_true", help="the default asyncio loop")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--seed", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args.child, args.seed))
        return
    global USE_UVLOOP
    try:
        import uvloop  # noqa: F401

        USE_UVLOOP = not args.no_uvloop
    except ImportError:
        pass
    print(f"event loop: {'uvloop' if USE_UVLOOP else 'asyncio (default)'}")
    messages = 5_000 if args.quick else 30_000
    calls = 300 if args.quick else 2_000
    bench_registry(rounds=20_000 if args.quick else 200_000)

    print(f"\npub/sub: {messages} messages of ~{len(msgpack.packb(PAYLOAD))} bytes, node -> node")
    ours = run(ours_pubsub(messages))
    raw = run(raw_pubsub(messages))
    sessions = zenoh_sessions()
    zenoh_rate = zenoh_pubsub(sessions, messages) if not isinstance(sessions, str) else None
    print(f"  {'foundation-p2p pubsub':32s} {ours:10.0f} msg/s")
    print(f"  {'raw asyncio msgpack loop':32s} {raw:10.0f} msg/s   ours/raw   {ours / raw:.2f}")
    if zenoh_rate is None:
        print(f"  {'zenoh':32s}   skipped: {sessions}")
    else:
        ratio = ours / zenoh_rate
        print(f"  {'zenoh (peer mode)':32s} {zenoh_rate:10.0f} msg/s   ours/zenoh {ratio:.2f}")

    print(f"\ncall: {calls} sequential round trips, p50 / p99 in µs")
    rows = [
        ("foundation-p2p call", run(ours_call(calls))),
        ("raw asyncio request/response", run(raw_call(calls))),
    ]
    if not isinstance(sessions, str):
        rows.append(("zenoh query/reply", zenoh_call(sessions, calls)))
        for session in sessions:
            session.close()
    else:
        print(f"  zenoh skipped: {sessions}")
    for label, (p50, p99) in rows:
        print(f"  {label:32s} p50 {p50:8.0f}   p99 {p99:8.0f}")

    if not args.skip_failover:
        failover(2 if args.quick else 5)


if __name__ == "__main__":
    main()
