"""SharedState benchmark: local sets, wire size, 3-node replication, visibility, memory, soak.

Run: python -m bench.shared_state [--quick] [--soak-seconds S] [--soak-only]
                                  [--skip-pysyncobj] [--skip-redis]
     (or python bench/shared_state.py)

Rows, each measured in this run on this machine (compare ratios, not absolute figures):
  local sets/s     `s[k] = v` on a SharedState of a local-only node, beside raw pycrdt
                   `Map[k] = v` on a bare Doc (the floor SharedState adds its codec to).
  wire bytes       the frame one node sends a peer for a 1-key update, beside pycrdt's own
                   update for the same change.
  3 nodes          three node processes on loopback (static seeds). Burst: node 0 writes as fast
                   as it can; writes/s = keys / (time until the last key is visible on every
                   node); "equal after" = time from the end of the burst until all three agree.
                   Paced: writes at a steady rate; write -> visible-on-each-peer latency p50/p99
                   (each process stamps with the same wall clock). Beside PySyncObj's ReplDict
                   (Raft, pip `pysyncobj`), three processes, pipelined sets (sync=False).
  A -> B           write on one node, visible on another, p50/p99, beside a central Redis
                   (Debian `redis-server` on 127.0.0.1, no persistence; SET by one client, GET
                   polled by another). Both run one write in flight, back to back: Redis's
                   next SET follows the GET that saw the last one; our A (its own process)
                   writes the next key when B's observer (another process) has seen the last
                   one and said so over a pipe, after stamping it.
  RSS 100k keys    a process holding 100k keys in a SharedState vs one in a raw pycrdt Map.
  soak             S seconds at a steady write rate spread over three nodes: every write present
                   on every node at the end, and RSS growth after warm-up (the largest of the
                   three nodes). Beside: the MiB a bare pycrdt Doc grows by over the same span
                   of the same writes (same keys, 10 ms batches), in a fresh process: what Yjs
                   itself keeps per overwritten Y.Map entry.
  soak, layout=kv  the same with SharedState(..., layout="kv") (keys in a Y.Array of entries).
  soak, layout=lanes  the same with SharedState(..., layout="lanes") (a Y.Array per writer).
Everything listens on 127.0.0.1; every process started is stopped by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

# Run as a script, this file's folder heads sys.path and its name would shadow a package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

DEADLINE = 60.0  # seconds any one phase may take before it is abandoned
SOAK_KEYS = 2000  # key slots each soak writer cycles through


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_mb() -> float:
    """This process's resident set size in MiB (Linux)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# --- local rows ---------------------------------------------------------------------------------


def raw_pycrdt_sets(n: int) -> float:
    """Sets/s on a bare pycrdt Map, one transaction per set."""
    from pycrdt import Doc, Map

    doc: Doc[Any] = Doc()
    table: Map[Any] = Map()
    doc["m"] = table
    started = time.perf_counter()
    for i in range(n):
        table[f"k{i % 1000}"] = i
    return n / (time.perf_counter() - started)


async def shared_state_sets(
    n: int, layout: str = "map", keys: int = 1000, shuffled: bool = False
) -> float:
    """Sets/s through SharedState on a started single node (replication machinery running),
    rewriting `keys` keys in turn, or in a random order (the same for every layout)."""
    from foundation_p2p import Node

    order = random.Random(1)
    names = [f"k{order.randrange(keys) if shuffled else i % keys}" for i in range(n)]
    async with Node(cluster="bench-local", listen="127.0.0.1:0", discovery=None) as node:
        state = node.shared_state("bench", layout=layout)
        state.update({f"k{i}": 0 for i in range(keys)})
        started = time.perf_counter()
        for i, name in enumerate(names):
            state[name] = i
            if i % 256 == 0:
                await asyncio.sleep(0)
        return n / (time.perf_counter() - started)


async def wire_bytes() -> tuple[int, int]:
    """(pycrdt's update for a 1-key change, the frame body our node sends a peer for it)."""
    from pycrdt import Doc, Map

    doc: Doc[Any] = Doc()
    table: Map[Any] = Map()
    doc["m"] = table
    table["warmup"] = 0
    before = doc.get_state()
    table["temperature"] = 21.5
    raw = len(doc.get_update(before))

    from foundation_p2p import Node

    sizes: list[int] = []
    async with Node(cluster="bench-wire", listen="127.0.0.1:0", discovery=None) as a:
        async with Node(
            cluster="bench-wire", listen="127.0.0.1:0", discovery="static", seeds=[a.address]
        ) as b:
            await wait_async(lambda: len(a.members()) == 2 and len(b.members()) == 2)
            state = a.shared_state("wire")
            state["warmup"] = 0
            await state.synced(timeout=5.0)
            assert a.transport is not None
            original, original_now = a.transport.send, a.transport.send_now

            def counting(peer_id: str, body: bytes, address: str | None = None) -> bool:
                sizes.append(len(body))
                return original(peer_id, body, address)

            def counting_now(peer_id: str, body: bytes, address: str | None = None) -> bool:
                sizes.append(len(body))  # a due push is written at once (Driver.push_due)
                return original_now(peer_id, body, address)

            a.transport.send = counting  # type: ignore[method-assign]
            a.transport.send_now = counting_now  # type: ignore[method-assign]
            await asyncio.sleep(0.3)  # let periodic traffic show its own sizes first
            idle = list(sizes)
            sizes.clear()
            state["temperature"] = 21.5
            await state.synced(timeout=5.0)
            a.transport.send = original  # type: ignore[method-assign]
            a.transport.send_now = original_now  # type: ignore[method-assign]
    pushed = [s for s in sizes if s not in idle] or sizes
    return raw, max(pushed) if pushed else -1


async def wait_async(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll check until true, or raise after timeout."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.01)


# --- three of our node processes ------------------------------------------------------------------


@asynccontextmanager
async def joined_node(cluster: str, index: int, ports: list[int]) -> AsyncIterator[Any]:
    """Node `index` of a loopback cluster on `ports`, once it sees every node alive."""
    from foundation_p2p import Node

    seeds = [f"127.0.0.1:{p}" for i, p in enumerate(ports) if i != index]
    async with Node(
        cluster=cluster,
        node_id=f"n{index}",
        listen=f"127.0.0.1:{ports[index]}",
        discovery="static",
        seeds=seeds,
    ) as node:
        alive = len(ports)
        await wait_async(lambda: sum(s == "alive" for s in node.members().values()) == alive)
        yield node


def ours_process(index: int, ports: list[int], plan: dict[str, Any], conn: Connection) -> None:
    """One node: joins the others, then writes (index 0) or records arrivals (others)."""
    asyncio.run(_ours(index, ports, plan, conn))


async def _ours(index: int, ports: list[int], plan: dict[str, Any], conn: Connection) -> None:
    async with joined_node("bench-3", index, ports) as node:
        state = node.shared_state("bench")
        len(state)  # the document exists before the go, as PySyncObj's ReplDict does
        arrivals: dict[str, float] = {}

        def seen(change: Any) -> None:
            now = time.time()
            for key in change.keys:
                arrivals.setdefault(key, now)

        if index not in plan["writers"]:  # the writer's own arrivals are never read
            state.observe(seen)
        conn.send("ready")
        conn.recv()  # go
        result: dict[str, Any] = {}
        if index in plan["writers"]:
            written: dict[str, float] = {}
            burst, paced, rate = plan["burst"], plan["paced"], plan["rate"]
            prefix = f"w{index}-"
            started = time.time()
            for i in range(burst):
                state[f"{prefix}b{i}"] = i
                if i % 64 == 63:
                    await asyncio.sleep(0)
            result["burst_start"], result["burst_end"] = started, time.time()
            await asyncio.sleep(0.5)
            interval = 1.0 / rate
            next_at = time.monotonic()
            for i in range(paced):
                key = f"{prefix}p{i}"
                written[key] = time.time()
                state[key] = i
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            result["written"] = written
        expected = plan["expected"]
        deadline = time.monotonic() + DEADLINE
        while len(state) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        result["arrivals"] = arrivals
        result["count"] = len(state)
        result["fingerprint"] = sorted(state.to_dict().items())
        conn.send(result)
        conn.recv()  # stop


def run_ours(burst: int, paced: int, rate: float) -> dict[str, Any]:
    """Three node processes; node 0 writes a burst then paced writes."""
    plan = {"writers": {0}, "burst": burst, "paced": paced, "rate": rate, "expected": burst + paced}
    return _three(ours_process, plan, free_ports=3)


# --- A -> B: two of our node processes -------------------------------------------------------


def ab_process(
    index: int, ports: list[int], plan: dict[str, Any], conn: Connection, seen: Connection
) -> None:
    """Node A (index 0) writes one key at a time; node B (index 1) stamps when each is visible
    and tells A through `seen`, so A writes the next key then: one write in flight, back to
    back, as Redis's SET-then-poll loop."""
    asyncio.run(_ab(index, ports, plan, conn, seen))


async def _ab(
    index: int, ports: list[int], plan: dict[str, Any], conn: Connection, seen: Connection
) -> None:
    async with joined_node("bench-ab", index, ports) as node:
        state = node.shared_state("ab")
        len(state)  # both documents exist before the go
        arrivals: dict[str, float] = {}

        def visible(change: Any) -> None:
            now = time.time()
            for key in change.keys:
                arrivals.setdefault(key, now)
            seen.send_bytes(b"")  # after the stamp: A's wake-up is not in the measure

        if index == 1:
            state.observe(visible)
        conn.send("ready")
        conn.recv()  # go
        written: dict[str, float] = {}
        samples = plan["samples"]
        if index == 0:
            from foundation_p2p.engine import PushAcked

            loop = asyncio.get_running_loop()
            waiting: list[asyncio.Future[bool]] = []  # B saw the key, then B acknowledged it

            def told(result: bool = True) -> None:
                if result:
                    seen.recv_bytes()
                for future in waiting:
                    if not future.done():
                        future.set_result(result)
                        return

            def acknowledged(event: Any) -> None:
                if type(event) is PushAcked and len(waiting) == 2 and not waiting[1].done():
                    waiting[1].set_result(True)

            loop.add_reader(seen.fileno(), told)
            unsubscribe = node.driver.subscribe(acknowledged)
            try:
                for i in range(samples):
                    # the harness's own work is done before the stamp, as Redis's has none
                    got, acked = loop.create_future(), loop.create_future()
                    waiting[:] = [got, acked]
                    give_up = loop.call_later(1.0, told, False)
                    key = f"k{i}"
                    written[key] = time.time()
                    state[key] = i
                    await got  # False (never seen in 1 s): counted as missing
                    # and the next write waits for B's acknowledgement of this one, as Redis's
                    # next SET follows this one's reply: no round's ack lands in the next
                    await acked
                    give_up.cancel()
            finally:
                unsubscribe()
                loop.remove_reader(seen.fileno())
        deadline = time.monotonic() + DEADLINE
        while len(state) < samples and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        held = node._require_engine().counters["push.held"]  # writes held as a burst's
        conn.send({"written": written, "arrivals": arrivals, "count": len(state), "held": held})
        conn.recv()  # stop


def run_ab(samples: int) -> dict[str, float]:
    """Two node processes: write on A, visible on B (B's observer), p50/p99 in ms."""
    seen_by_a, seen_from_b = mp.get_context("spawn").Pipe(duplex=False)
    plan = {"samples": samples}
    ends = [seen_by_a, seen_from_b]
    results = run_group(ab_process, 2, plan, DEADLINE * 2, "an A->B node", extra=ends)
    written, arrivals = results[0]["written"], results[1]["arrivals"]
    latencies = [(arrivals[k] - at) * 1000 for k, at in written.items() if k in arrivals]
    return {
        "p50_ms": percentile(latencies, 0.5) if latencies else float("nan"),
        "p99_ms": percentile(latencies, 0.99) if latencies else float("nan"),
        "missing": float(samples - len(latencies)),
        "held": float(results[0]["held"]),
    }


# --- PySyncObj's ReplDict ---------------------------------------------------------------------


def pysyncobj_process(index: int, ports: list[int], plan: dict[str, Any], conn: Connection) -> None:
    """One PySyncObj node with a ReplDict; index 0 writes, the others poll for arrivals."""
    from pysyncobj import SyncObj, SyncObjConf  # type: ignore[import-untyped]
    from pysyncobj.batteries import ReplDict  # type: ignore[import-untyped]

    table = ReplDict()
    me = f"127.0.0.1:{ports[index]}"
    others = [f"127.0.0.1:{p}" for i, p in enumerate(ports) if i != index]
    node = SyncObj(me, others, consumers=[table], conf=SyncObjConf(dynamicMembershipChange=False))
    deadline = time.monotonic() + DEADLINE
    while not (node.isReady() and node._getLeader() is not None):
        if time.monotonic() > deadline:
            conn.send({"error": "no Raft leader"})
            return
        time.sleep(0.01)
    conn.send("ready")
    conn.recv()
    result: dict[str, Any] = {}
    arrivals: dict[str, float] = {}
    expected = plan["expected"]
    if index in plan["writers"]:
        burst, paced, rate = plan["burst"], plan["paced"], plan["rate"]
        started = time.time()
        for i in range(burst):
            table.set(f"w0-b{i}", i, sync=False)
        result["burst_start"], result["burst_end"] = started, time.time()
        time.sleep(0.5)
        written: dict[str, float] = {}
        interval = 1.0 / rate
        next_at = time.monotonic()
        for i in range(paced):
            key = f"w0-p{i}"
            written[key] = time.time()
            table.set(key, i, sync=False)
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        result["written"] = written
    deadline = time.monotonic() + DEADLINE
    known: set[str] = set()
    while time.monotonic() < deadline:
        keys = set(table.keys())
        now = time.time()
        for key in keys - known:
            arrivals[key] = now
        known = keys
        if len(keys) >= expected:
            break
        time.sleep(0.0005)
    result["arrivals"] = arrivals
    result["count"] = len(table)
    result["fingerprint"] = sorted(table.items())
    conn.send(result)
    conn.recv()
    node.destroy()


def run_pysyncobj(burst: int, paced: int, rate: float) -> dict[str, Any]:
    """Three PySyncObj processes; node 0 writes (forwarded to the leader if it is not one)."""
    plan = {"writers": {0}, "burst": burst, "paced": paced, "rate": rate, "expected": burst + paced}
    return _three(pysyncobj_process, plan, free_ports=3)


def _three(target: Any, plan: dict[str, Any], free_ports: int) -> dict[str, Any]:
    """Start three processes of target, run the plan, gather and summarise their results."""
    return summarise(plan, run_group(target, 3, plan, DEADLINE * 3, "a process", free_ports))


def run_group(
    target: Any,
    count: int,
    plan: dict[str, Any],
    report_within: float,
    what: str,
    free_ports: int | None = None,
    extra: list[Any] | None = None,
) -> list[Any]:
    """Start `count` processes of target(i, ports, plan, pipe[, extra[i]]), wait for each to
    say "ready", send "go", gather one result from each, send "stop"; every process is
    joined, or killed by its pid, whatever happens."""
    context = mp.get_context("spawn")
    ports = [free_port() for _ in range(count if free_ports is None else free_ports)]
    pipes = [context.Pipe() for _ in range(count)]
    processes = [
        context.Process(
            target=target,
            args=(i, ports, plan, pipes[i][1], *([extra[i]] if extra is not None else [])),
            daemon=True,
        )
        for i in range(count)
    ]
    for process in processes:
        process.start()
    try:
        for parent, _ in pipes:
            if not parent.poll(DEADLINE):
                raise TimeoutError(f"{what} never became ready")
            ready = parent.recv()
            if ready != "ready":
                raise RuntimeError(str(ready))
        for parent, _ in pipes:
            parent.send("go")
        results = []
        for parent, _ in pipes:
            if not parent.poll(report_within):
                raise TimeoutError(f"{what} never reported")
            results.append(parent.recv())
        for parent, _ in pipes:
            parent.send("stop")
        return results
    finally:
        for process in processes:
            process.join(5.0)
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGKILL)
                process.join(5.0)


def summarise(plan: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """Throughput of the burst, latency of the paced writes, and whether all replicas agree."""
    writer = results[0]
    burst_keys = [f"w0-b{i}" for i in range(plan["burst"])]
    last_visible = max(
        max(r["arrivals"].get(k, writer["burst_end"]) for k in burst_keys) for r in results[1:]
    )
    missing = sum(plan["expected"] - r["count"] for r in results)
    latencies = [
        (r["arrivals"][key] - at) * 1000
        for r in results[1:]
        for key, at in writer["written"].items()
        if key in r["arrivals"]
    ]
    equal = all(r["fingerprint"] == results[0]["fingerprint"] for r in results)
    return {
        "writes_per_s": plan["burst"] / (last_visible - writer["burst_start"]),
        "equal_after_s": max(0.0, last_visible - writer["burst_end"]),
        "p50_ms": percentile(latencies, 0.5) if latencies else float("nan"),
        "p99_ms": percentile(latencies, 0.99) if latencies else float("nan"),
        "missing": missing,
        "equal": equal,
    }


# --- Redis ----------------------------------------------------------------------


def run_redis(samples: int) -> dict[str, Any] | str:
    """SET by one client, GET polled by another, through a local redis-server."""
    server = shutil.which("redis-server")
    if server is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "redis-server"], capture_output=True)
        server = shutil.which("redis-server")
    if server is None:
        return "redis-server not installed"
    try:
        import redis
    except ImportError:
        return "python package `redis` not installed"
    port = free_port()
    process = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        writer = redis.Redis(port=port)
        reader = redis.Redis(port=port)
        deadline = time.monotonic() + 10.0
        while True:
            try:
                writer.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    return "redis-server did not start"
                time.sleep(0.05)
        latencies = []
        for i in range(samples):
            started = time.perf_counter()
            writer.set(f"k{i}", i)
            while reader.get(f"k{i}") is None:
                pass
            latencies.append((time.perf_counter() - started) * 1000)
        return {
            "p50_ms": percentile(latencies, 0.5),
            "p99_ms": percentile(latencies, 0.99),
            "latencies": latencies,
        }
    finally:
        process.kill()
        process.wait(5.0)


# --- memory ----------------------------------------------------------------------


def memory_process(kind: str, keys: int, conn: Connection) -> None:
    """RSS growth of holding `keys` keys, in a fresh process."""
    if kind == "pycrdt":
        from pycrdt import Doc, Map

        doc: Doc[Any] = Doc()
        table: Map[Any] = Map()
        doc["m"] = table
        before = rss_mb()
        with doc.transaction():
            for i in range(keys):
                table[f"key-{i}"] = i
        conn.send(rss_mb() - before)
        return

    async def ours() -> float:
        from foundation_p2p import Node

        async with Node(cluster="bench-mem", listen="127.0.0.1:0", discovery=None) as node:
            state = node.shared_state("bench")
            len(state)  # its document exists before measuring, as the pycrdt side's does
            before = rss_mb()
            with state.transaction():
                for i in range(keys):
                    state[f"key-{i}"] = i
            await asyncio.sleep(0.1)
            return rss_mb() - before

    conn.send(asyncio.run(ours()))


def run_memory(kind: str, keys: int) -> float:
    """MiB added by `keys` keys in a fresh process of kind (pycrdt|ours)."""
    context = mp.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=memory_process, args=(kind, keys, child), daemon=True)
    process.start()
    try:
        if not parent.poll(DEADLINE):
            raise TimeoutError(f"memory run {kind} never reported")
        return float(parent.recv())
    finally:
        process.join(5.0)
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGKILL)


# --- soak ----------------------------------------------------------------------


def warm_up(seconds: float) -> float:
    """Seconds of a soak before RSS growth is counted."""
    return min(10.0, seconds / 3)


def soak_pycrdt_process(written: list[int], seconds: float, keys: int, conn: Connection) -> None:
    """A bare pycrdt Doc taking the soak's writes (same keys, same 10 ms batches, same count):
    RSS growth (MiB) from the warm-up's share of the writes to the end."""
    from pycrdt import Doc, Map

    doc: Doc[Any] = Doc()
    table: Map[Any] = Map()
    doc["data"] = table
    turns = max(1, round(seconds * 100))  # the soak writes once per 10 ms turn
    warm_turn = round(turns * warm_up(seconds) / seconds)
    done = [0] * len(written)
    start_mb = rss_mb()
    for turn in range(1, turns + 1):
        with doc.transaction():
            for writer, total in enumerate(written):
                due = total * turn // turns
                while done[writer] < due:
                    table[f"n{writer}-{done[writer] % keys}"] = done[writer]
                    done[writer] += 1
        if turn == warm_turn:
            start_mb = rss_mb()
    conn.send(rss_mb() - start_mb)


def run_soak_pycrdt(written: list[int], seconds: float, keys: int) -> float:
    """MiB a bare pycrdt Doc grows by after warm-up for the soak's writes, in a fresh process."""
    context = mp.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(
        target=soak_pycrdt_process, args=(written, seconds, keys, child), daemon=True
    )
    process.start()
    try:
        if not parent.poll(DEADLINE * 2):
            raise TimeoutError("the pycrdt soak reference never reported")
        return float(parent.recv())
    finally:
        process.join(5.0)
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGKILL)


def soak_process(index: int, ports: list[int], plan: dict[str, Any], conn: Connection) -> None:
    """One node of the soak: writes its share at a steady rate, samples RSS."""
    asyncio.run(_soak(index, ports, plan, conn))


async def _soak(index: int, ports: list[int], plan: dict[str, Any], conn: Connection) -> None:
    async with joined_node("bench-soak", index, ports) as node:
        state = node.shared_state("soak", layout=plan.get("layout", "map"))
        conn.send("ready")
        conn.recv()
        seconds, rate = plan["seconds"], plan["rate"] / 3
        keys = plan["keys"]
        started = time.monotonic()
        written = 0
        samples: list[tuple[float, float]] = []
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate)
            with state.transaction():
                while written < due:
                    state[f"n{index}-{written % keys}"] = written
                    written += 1
            if not samples or elapsed - samples[-1][0] >= 1.0:
                samples.append((elapsed, rss_mb()))
            await asyncio.sleep(0.01)
        with state.transaction():
            state[f"n{index}-done"] = written
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            done = [state.get(f"n{i}-done") for i in range(3)]
            if all(d is not None for d in done):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        final = {f"n{i}": state.get(f"n{i}-done") for i in range(3)}  # how many each writer wrote
        last_values = {i: [state.get(f"n{i}-{k}") for k in range(keys)] for i in range(3)}
        conn.send({"written": written, "final": final, "last": last_values, "rss": samples})
        conn.recv()


def run_soak(seconds: float, rate: float, layout: str = "map") -> dict[str, Any]:
    """Three nodes writing rate/3 each for seconds; check every last write landed everywhere."""
    plan: dict[str, Any] = {"seconds": seconds, "rate": rate, "keys": SOAK_KEYS, "layout": layout}
    results = run_group(soak_process, 3, plan, seconds + DEADLINE * 2, "a soak node")
    keys = plan["keys"]
    lost = 0
    for writer, result in enumerate(results):
        total = result["written"]
        # the last value this writer put in each key slot
        expected = [total - 1 - (total - 1 - k) % keys if total > k else None for k in range(keys)]
        for other in results:
            lost += sum(a != b for a, b in zip(other["last"][writer], expected, strict=True))
    growth = []
    grown_mb = []
    for result in results:
        samples = result["rss"]
        warm = [rss for t, rss in samples if t >= warm_up(seconds)]
        if len(warm) >= 2:
            growth.append((warm[-1] - warm[0]) / warm[0] * 100)
            grown_mb.append(warm[-1] - warm[0])
    achieved = sum(r["written"] for r in results) / seconds
    return {
        "lost": lost,
        "rss_growth_pct": max(growth) if growth else float("nan"),
        "rss_growth_mb": max(grown_mb) if grown_mb else float("nan"),
        "writes_per_s": achieved,
        "written": [r["written"] for r in results],
    }


# --- main ----------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    parser.add_argument("--soak-seconds", type=float, default=None)
    parser.add_argument("--skip-pysyncobj", action="store_true")
    parser.add_argument("--skip-redis", action="store_true")
    parser.add_argument("--soak-only", action="store_true", help="only the soak rows")
    args = parser.parse_args()
    quick = args.quick
    sets = 20_000 if quick else 200_000
    burst, paced, rate = (2_000, 100, 100.0) if quick else (20_000, 500, 200.0)
    soak_seconds = args.soak_seconds if args.soak_seconds is not None else (10.0 if quick else 60.0)

    rows: list[tuple[str, str, str, str]] = []
    if not args.soak_only:
        rows += other_rows(quick, sets, burst, paced, rate, args)
        rows += layout_rows(sets // 10)
    rows += soak_rows(soak_seconds)
    print_rows(rows)


def layout_rows(sets: int) -> list[tuple[str, str, str, str]]:
    """Local rewrite speed of each layout, 2000 keys rewritten in a random order (the worst
    for kv and lanes: yrs walks to each entry's position through the structs it leaves)."""
    from foundation_p2p.services.state import LAYOUTS

    rates = {layout: asyncio.run(shared_state_sets(sets, layout, 2000, True)) for layout in LAYOUTS}
    return [
        (
            f"rewrites/s, 2000 keys, layout={layout}",
            f"{rate:,.0f}",
            f"map {rates['map']:,.0f}",
            f"{rate / rates['map']:.2f}x",
        )
        for layout, rate in rates.items()
        if layout != "map"
    ]


def soak_rows(seconds: float) -> list[tuple[str, str, str, str]]:
    """The soak in each layout, and a bare pycrdt Doc taking the same writes."""
    from foundation_p2p.services.state import LAYOUTS

    rows = []
    for layout in LAYOUTS:
        soak = run_soak(seconds, 10_000, layout=layout)
        beside = f"lost {soak['lost']}"
        if layout == "map":
            bare_mb = run_soak_pycrdt(soak["written"], seconds, SOAK_KEYS)
            beside += f"; bare pycrdt Doc, same writes: +{bare_mb:.1f} MiB"
        rows.append(
            (
                f"soak {seconds:.0f}s @10k/s" + ("" if layout == "map" else f", layout={layout}"),
                f"{soak['writes_per_s']:,.0f} writes/s, +{soak['rss_growth_mb']:.1f} MiB",
                beside,
                f"RSS growth after warm-up {soak['rss_growth_pct']:.1f}% (goal <= 10%)",
            )
        )
    return rows


def other_rows(
    quick: bool, sets: int, burst: int, paced: int, rate: float, args: argparse.Namespace
) -> list[tuple[str, str, str, str]]:
    """Every row but the soaks."""
    rows: list[tuple[str, str, str, str]] = []
    raw = raw_pycrdt_sets(sets)
    ours = asyncio.run(shared_state_sets(sets))
    rows.append(
        ("local sets/s", f"{ours:,.0f}", f"pycrdt {raw:,.0f}", f"{ours / raw:.2f}x (goal >= 0.7x)")
    )

    pycrdt_bytes, frame_bytes = asyncio.run(wire_bytes())
    rows.append(
        (
            "1-key update, bytes",
            str(frame_bytes),
            f"pycrdt {pycrdt_bytes}",
            f"+{frame_bytes - pycrdt_bytes} (goal <= +48)",
        )
    )

    three = run_ours(burst, paced, rate)
    three_s = f"{three['writes_per_s']:,.0f}/s, equal {three['equal_after_s']:.2f}s after"
    lat_s = f"p50 {three['p50_ms']:.2f} / p99 {three['p99_ms']:.2f} ms"
    check = f"missing {three['missing']}, replicas equal: {three['equal']}"
    if args.skip_pysyncobj:
        rows.append(("3 nodes burst", three_s, "PySyncObj skipped", check))
        rows.append(("3 nodes write->visible", lat_s, "PySyncObj skipped", ""))
    else:
        try:
            raft = run_pysyncobj(burst, paced, rate)
            rows.append(
                (
                    "3 nodes burst",
                    three_s,
                    f"PySyncObj {raft['writes_per_s']:,.0f}/s",
                    f"{three['writes_per_s'] / raft['writes_per_s']:.1f}x (goal >= 5x); {check}",
                )
            )
            rows.append(
                (
                    "3 nodes write->visible",
                    lat_s,
                    f"PySyncObj p50 {raft['p50_ms']:.1f} / p99 {raft['p99_ms']:.1f} ms",
                    f"{three['p50_ms'] / raft['p50_ms']:.3f}x (goal <= 0.1x)",
                )
            )
        except ImportError:
            rows.append(("3 nodes burst", three_s, "pysyncobj not installed", check))
            rows.append(("3 nodes write->visible", lat_s, "pysyncobj not installed", ""))

    ab_samples = 200 if quick else 2000
    # Redis runs half its samples just before ours and half just after, so a change in the
    # shared machine's load during the run weighs on both sides alike
    red: dict[str, Any] | str = "Redis skipped"
    if not args.skip_redis:
        red = run_redis(ab_samples // 2)
    ab = run_ab(ab_samples)
    if isinstance(red, dict):
        after = run_redis(ab_samples // 2)
        if isinstance(after, dict):
            both = red["latencies"] + after["latencies"]
            red = {"p50_ms": percentile(both, 0.5), "p99_ms": percentile(both, 0.99)}
    ab_s = f"p50 {ab['p50_ms']:.2f} / p99 {ab['p99_ms']:.2f} ms"
    if ab["missing"]:
        ab_s += f", {ab['missing']:.0f} missing"
    if args.skip_redis:
        rows.append(("A->B visible", ab_s, "Redis skipped", ""))
    else:
        if isinstance(red, str):
            rows.append(("A->B visible", ab_s, red, ""))
        else:
            rows.append(
                (
                    "A->B visible",
                    ab_s,
                    f"Redis p50 {red['p50_ms']:.2f} / p99 {red['p99_ms']:.2f} ms",
                    f"{ab['p50_ms'] / red['p50_ms']:.2f}x (goal p50 <= 1 ms, <= 2x)",
                )
            )

    keys = 20_000 if quick else 100_000
    mem_raw = run_memory("pycrdt", keys)
    mem_ours = run_memory("ours", keys)
    rows.append(
        (
            f"RSS for {keys // 1000}k keys",
            f"{mem_ours:.1f} MiB",
            f"pycrdt {mem_raw:.1f} MiB",
            f"{mem_ours / mem_raw:.2f}x (goal <= 1.1x)",
        )
    )

    return rows


def print_rows(rows: list[tuple[str, str, str, str]]) -> None:
    """The rows as a table, then the machine."""
    widths = [max(len(r[i]) for r in [*rows, ("row", "ours", "beside", "ratio")]) for i in range(4)]
    print(
        " | ".join(
            h.ljust(w)
            for h, w in zip(("row", "ours", "beside", "ratio / check"), widths, strict=True)
        )
    )
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(f"\nmachine: {os.cpu_count()} cores, python {sys.version.split()[0]}, pid {os.getpid()}")


if __name__ == "__main__":
    main()
