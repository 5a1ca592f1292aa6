"""Membership benchmark: our nodes against Serf, each node a separate OS process on loopback.

Run: python -m bench.membership [--quick] [--skip-serf] [--sizes 5,15] [--systems dev,prod,serf]
     (or python bench/membership.py)

For N = 5 and 15 nodes, each of three clusters (ours with the development timings, ours with
the production timings and a cluster key, Serf 0.8 with its LAN profile and an encryption key)
is started, measured and stopped in turn, in the same run on the same machine:

  join        the seed process starts; once it answers, the other N-1 start at once and join it
              (ours: --seeds; Serf: `serf join` as soon as each agent answers). Time from the
              seed's start until every node reports every other alive, and the part of it after
              the last process answered (protocol convergence, without interpreter start-up).
  write       ours: PUT /state/bench/<key> on node 0, then GET it on every other node until it
              is there. Serf: a user event (RPC `event`, coalescing off) from node 0, received by
              an RPC `stream` on every other node (pushed, so not bound by the poll interval).
              Time until it is visible on all; p50 and max over the writes.
  quiet       a window with nothing happening: every observer is polled for any live node shown
              suspect/dead/failed (false positives). Suspicions refuted before a poll saw them
              are counted apart: ours from incarnation bumps, Serf from its "Suspect" log lines.
  kill -9     SIGKILL the last node; time until every remaining node reports it dead (Serf:
              failed).

Views are read through each system's own query API at POLL_INTERVAL: ours GET /members over a
kept-alive HTTP connection, Serf its msgpack RPC `members` (what `serf members` calls) over a
kept-alive RPC connection. Serf is installed with `apt-get install -y serf` when it is missing
and this runs as root; otherwise its columns are skipped. Everything listens on 127.0.0.1 only,
every wait has a deadline, and every process started is stopped by its pid.
Figures are wall-clock on whatever machine runs this; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, this file's folder heads sys.path and its names would shadow packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import msgpack  # noqa: E402

from foundation_p2p.config import Config  # noqa: E402
from transport import generate_key, key_to_text  # noqa: E402

HOST = "127.0.0.1"
POLL_INTERVAL = 0.02  # membership views, per node
WRITE_POLL_INTERVAL = 0.01  # our GETs while a write propagates, per node
QUIET_POLL_INTERVAL = 0.1  # views during the quiet window (incarnations catch what it misses)
READY_TIMEOUT = 60.0  # every process answering its API
JOIN_TIMEOUT = 60.0  # every node seeing every other alive
DETECT_TIMEOUT = 120.0  # every node reporting the killed one dead
WRITE_TIMEOUT = 10.0  # one write visible everywhere
STOP_TIMEOUT = 10.0  # a process exiting after SIGTERM, before SIGKILL
BETWEEN_WRITES = 0.1
SERF_STATUS = {"alive": "alive", "failed": "dead", "leaving": "left", "left": "left"}
View = dict[str, tuple[str, int | None]]  # member -> (status, incarnation or None)


# --- small tools -----------------------------------------------------------------------------


def free_port() -> int:
    """A port free on loopback for both TCP and UDP (Serf's gossip uses both)."""
    for _ in range(100):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind((HOST, 0))
            port = int(tcp.getsockname()[1])
            try:
                udp.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port for TCP and UDP")


def wait_each(
    indices: Iterable[int], check: Callable[[int], bool], timeout: float, interval: float
) -> dict[int, float]:
    """Poll `check(i)` for each i in its own thread until it holds or `timeout` passes;
    {i: time.monotonic() when it first held} for those that did."""
    deadline = time.monotonic() + timeout
    seen: dict[int, float] = {}

    def poll(i: int) -> None:
        while time.monotonic() < deadline:
            try:
                held = check(i)
            except (
                OSError,
                ValueError,
                KeyError,
                http.client.HTTPException,
                subprocess.TimeoutExpired,
                SerfError,
            ):
                held = False
            if held:
                seen[i] = time.monotonic()
                return
            time.sleep(interval)

    threads = [threading.Thread(target=poll, args=(i,), daemon=True) for i in indices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 5.0)
    return seen


def stop_processes(processes: Iterable[subprocess.Popen[bytes] | None]) -> None:
    """SIGTERM every process still running, then SIGKILL any that outlives STOP_TIMEOUT."""
    running = [p for p in processes if p is not None and p.poll() is None]
    for process in running:
        try:
            os.kill(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)


class HttpClient:
    """One kept-alive HTTP connection to one node's API (one request at a time)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._connection: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, decoded JSON body); OSError or HTTPException if the node does not answer."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        with self._lock:
            for attempt in range(2):  # a kept-alive connection may have been closed meanwhile
                if self._connection is None:
                    self._connection = http.client.HTTPConnection(HOST, self.port, timeout=3.0)
                try:
                    self._connection.request(method, path, body=data, headers=headers)
                    response = self._connection.getresponse()
                    payload = response.read()
                    return response.status, json.loads(payload or b"null")
                except (OSError, http.client.HTTPException):
                    self._connection.close()
                    self._connection = None
                    if attempt:
                        raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


class SerfError(RuntimeError):
    """The Serf agent answered an RPC with an error, or not at all."""


class SerfRpc:
    """A minimal client of Serf's msgpack RPC: handshake, members, event, stream."""

    def __init__(self, port: int, timeout: float = 3.0) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.seq = 0
        self.lock = threading.Lock()
        self._call("handshake", {"Version": 1})

    def members(self) -> View:
        """{name: (status, None)}, statuses mapped to ours (failed -> dead)."""
        body = self._call("members", reply_body=True)
        return {
            m["Name"]: (SERF_STATUS.get(m["Status"], m["Status"]), None) for m in body["Members"]
        }

    def event(self, name: str, payload: bytes) -> None:
        """Fire a user event (not coalesced)."""
        self._call("event", {"Name": name, "Payload": payload, "Coalesce": False})

    def stream(self, kind: str) -> None:
        """Subscribe this connection to events of `kind`; read them with next_event()."""
        self._call("stream", {"Type": kind})

    def next_event(self) -> dict[str, Any] | None:
        """The next streamed event, or None if none arrives within the socket timeout."""
        while True:
            try:
                obj: dict[str, Any] = self._read()
            except TimeoutError:
                return None
            if "Event" in obj:  # each event follows a header {"Seq", "Error"}: skip those
                return obj

    def close(self) -> None:
        self.sock.close()

    def _call(self, command: str, body: Any = None, reply_body: bool = False) -> Any:
        with self.lock:
            header = msgpack.packb({"Command": command, "Seq": self.seq})
            self.seq += 1
            self.sock.sendall(header + (b"" if body is None else msgpack.packb(body)))
            reply = self._read()
            if reply.get("Error"):
                raise SerfError(f"serf {command}: {reply['Error']}")
            return self._read() if reply_body else None

    def _read(self) -> Any:
        for obj in self.unpacker:  # a partial object stays buffered across a timeout
            return obj
        for _ in range(10_000):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SerfError("the agent closed the RPC connection")
            self.unpacker.feed(chunk)
            for obj in self.unpacker:
                return obj
        raise SerfError("no complete RPC reply")


# --- the clusters under test -----------------------------------------------------------------


class Cluster(ABC):
    """N processes of one system; index 0 is the seed the others join."""

    label = ""
    prefix = "n"  # node names are prefix + index

    def __init__(self, n: int, workdir: Path) -> None:
        self.n = n
        self.workdir = workdir
        self.names = [f"{self.prefix}{i}" for i in range(n)]
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * n
        self.logs = [workdir / f"{name}.log" for name in self.names]

    def launch(self, i: int) -> None:
        """Start process i (returns at once)."""
        with open(self.logs[i], "wb") as log:
            self.processes[i] = subprocess.Popen(
                self.command(i),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,  # not bench/, whose transport.py would shadow the package
            )

    @abstractmethod
    def command(self, i: int) -> list[str]:
        """The command line that starts process i."""

    @abstractmethod
    def ready(self, i: int) -> bool:
        """Whether process i answers its API (and, for Serf, has joined the seed)."""

    @abstractmethod
    def view(self, i: int) -> View:
        """The member table as node i sees it."""

    @abstractmethod
    def write_latency(self, seq: int) -> float | None:
        """Seconds from a write (or event) on node 0 until every other live node shows it."""

    def suspicion_marks(self) -> int | None:
        """Suspicions raised so far that a poll might miss (None if not observable)."""
        return None

    def kill(self, i: int) -> None:
        """SIGKILL process i and reap it."""
        process = self.processes[i]
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """Stop every process and close every client."""
        stop_processes(self.processes)

    def alive(self) -> bool:
        """Whether every started process is still running."""
        return all(p is not None and p.poll() is None for p in self.processes)


class OurCluster(Cluster):
    """`python -m foundation_p2p node` processes with one timings profile."""

    prefix = "n"

    def __init__(self, n: int, workdir: Path, profile: str, key_file: Path | None) -> None:
        super().__init__(n, workdir)
        self.profile = profile
        self.key_file = key_file
        self.label = f"ours ({profile})"
        self.cluster = f"bench-{profile}-{n}"
        self.gossip = [free_port() for _ in range(n)]
        self.http = [free_port() for _ in range(n)]
        self.clients = [HttpClient(port) for port in self.http]

    def command(self, i: int) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "foundation_p2p",
            "node",
            "--cluster",
            self.cluster,
            "--node-id",
            self.names[i],
            "--listen",
            f"{HOST}:{self.gossip[i]}",
            "--http",
            f"{HOST}:{self.http[i]}",
            "--profile",
            self.profile,
        ]
        if i:
            command += ["--seeds", f"{HOST}:{self.gossip[0]}"]
        if self.key_file is not None:
            command += ["--key-file", str(self.key_file)]
        return command

    def ready(self, i: int) -> bool:
        return self.clients[i].request("GET", "/health")[0] == 200

    def view(self, i: int) -> View:
        status, body = self.clients[i].request("GET", "/members")
        if status != 200:
            raise ValueError(f"GET /members: HTTP {status}")
        return {
            name: (member["status"], int(member["incarnation"]))
            for name, member in body["members"].items()
        }

    def write_latency(self, seq: int) -> float | None:
        path = f"/state/bench/k{seq}"
        start = time.monotonic()
        status, _ = self.clients[0].request("PUT", path, seq)
        if status != 200:
            raise RuntimeError(f"PUT {path} on {self.names[0]}: HTTP {status}")

        def visible(i: int) -> bool:
            status, body = self.clients[i].request("GET", path)
            return status == 200 and body.get("value") == seq

        others = range(1, self.n)
        seen = wait_each(others, visible, WRITE_TIMEOUT, WRITE_POLL_INTERVAL)
        return max(seen.values()) - start if len(seen) == len(others) else None

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            for client in self.clients:
                client.close()


class SerfCluster(Cluster):
    """`serf agent` processes (LAN profile, encrypted), joined with `serf join`."""

    prefix = "s"
    label = "Serf"

    def __init__(self, n: int, workdir: Path, serf: str, encrypt: str) -> None:
        super().__init__(n, workdir)
        self.serf = serf
        self.encrypt = encrypt
        self.bind = [free_port() for _ in range(n)]
        self.rpc_ports = [free_port() for _ in range(n)]
        self.rpc: list[SerfRpc | None] = [None] * n
        self.joined = [False] * n
        self.readers: list[threading.Thread] = []
        self.received: dict[int, dict[bytes, float]] = {}
        self.events = threading.Condition()
        self.streaming = threading.Event()
        self.stream_clients: list[SerfRpc] = []

    def command(self, i: int) -> list[str]:
        return [
            self.serf,
            "agent",
            f"-node={self.names[i]}",
            f"-bind={HOST}:{self.bind[i]}",
            f"-rpc-addr={HOST}:{self.rpc_ports[i]}",
            f"-encrypt={self.encrypt}",
            "-profile=lan",
            "-log-level=info",
        ]

    def client(self, i: int) -> SerfRpc:
        rpc = self.rpc[i]
        if rpc is None:
            rpc = self.rpc[i] = SerfRpc(self.rpc_ports[i])
        return rpc

    def ready(self, i: int) -> bool:
        self.client(i)
        if i and not self.joined[i]:
            join = subprocess.run(
                [
                    self.serf,
                    "join",
                    f"-rpc-addr={HOST}:{self.rpc_ports[i]}",
                    f"{HOST}:{self.bind[0]}",
                ],
                capture_output=True,
                timeout=15.0,
                cwd=self.workdir,
            )
            if join.returncode != 0:
                raise SerfError(f"serf join: {join.stderr.decode(errors='replace').strip()}")
            self.joined[i] = True
        return True

    def view(self, i: int) -> View:
        try:
            return self.client(i).members()
        except (OSError, SerfError):
            self._drop_client(i)
            raise

    def write_latency(self, seq: int) -> float | None:
        if not self.readers:
            self._start_readers()
        payload = str(seq).encode()
        others = range(1, self.n)
        start = time.monotonic()
        self.client(0).event("bench", payload)
        deadline = start + WRITE_TIMEOUT
        with self.events:
            while not all(payload in self.received[i] for i in others):
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.events.wait(left)
            return max(self.received[i][payload] for i in others) - start

    def suspicion_marks(self) -> int:
        marks = 0
        for log in self.logs:
            if log.exists():
                marks += log.read_text(errors="replace").count("memberlist: Suspect ")
        return marks

    def stop(self) -> None:
        self.streaming.clear()
        try:
            for reader in self.readers:
                reader.join(5.0)
            for rpc in [*self.rpc, *self.stream_clients]:
                if rpc is not None:
                    rpc.close()
        finally:
            super().stop()

    def _drop_client(self, i: int) -> None:
        rpc, self.rpc[i] = self.rpc[i], None
        if rpc is not None:
            rpc.close()

    def _start_readers(self) -> None:
        """One RPC stream of user events per receiving node, read in its own thread."""
        self.streaming.set()
        for i in range(1, self.n):
            rpc = SerfRpc(self.rpc_ports[i], timeout=0.5)
            rpc.stream("user:bench")  # the agent acknowledges before any event is sent
            self.stream_clients.append(rpc)
            self.received[i] = {}
            reader = threading.Thread(target=self._read_events, args=(i, rpc), daemon=True)
            self.readers.append(reader)
            reader.start()

    def _read_events(self, i: int, rpc: SerfRpc) -> None:
        deadline = time.monotonic() + 3600.0
        while self.streaming.is_set() and time.monotonic() < deadline:
            try:
                event = rpc.next_event()
            except (OSError, SerfError):
                return
            if event is not None and event.get("Event") == "user":
                with self.events:
                    self.received[i].setdefault(bytes(event["Payload"]), time.monotonic())
                    self.events.notify_all()


# --- one run of one cluster ------------------------------------------------------------------


@dataclass
class Result:
    """What one cluster measured; None where a step did not complete."""

    join: float | None = None
    join_after_ready: float | None = None
    write_p50: float | None = None
    write_max: float | None = None
    false_positives: int | None = None
    refuted: int | None = None
    detect: float | None = None
    notes: list[str] = field(default_factory=list)


def measure(cluster: Cluster, writes: int, quiet: float) -> Result:
    """Join, writes, quiet window, kill -9; the cluster is stopped before this returns."""
    result = Result()
    everyone = range(cluster.n)
    try:
        start = time.monotonic()
        cluster.launch(0)
        if not wait_each([0], cluster.ready, READY_TIMEOUT, POLL_INTERVAL):
            result.notes.append("the seed never answered")
            return result
        for i in everyone[1:]:
            cluster.launch(i)
        ready = wait_each(everyone[1:], cluster.ready, READY_TIMEOUT, POLL_INTERVAL)
        if len(ready) < cluster.n - 1:
            result.notes.append(f"only {len(ready) + 1}/{cluster.n} processes answered")
            for i in sorted(set(everyone[1:]) - set(ready)):
                process = cluster.processes[i]
                code = None if process is None else process.poll()
                tail = cluster.logs[i].read_text(errors="replace").splitlines()[-5:]
                result.notes.append(
                    f"{cluster.names[i]} (exit code {code}) log ends: " + " | ".join(tail)
                )
            return result
        last_ready = max(ready.values())

        def sees_all_alive(i: int) -> bool:
            view = cluster.view(i)
            return all(view.get(name, ("absent", None))[0] == "alive" for name in cluster.names)

        joined = wait_each(everyone, sees_all_alive, JOIN_TIMEOUT, POLL_INTERVAL)
        if len(joined) < cluster.n:
            result.notes.append(f"join: {len(joined)}/{cluster.n} saw everyone alive in time")
            return result
        result.join = max(joined.values()) - start
        result.join_after_ready = max(joined.values()) - last_ready

        latencies = []
        for seq in range(writes):
            latency = cluster.write_latency(seq)
            if latency is None:
                result.notes.append(f"write {seq} not visible everywhere within {WRITE_TIMEOUT}s")
            else:
                latencies.append(latency)
            time.sleep(BETWEEN_WRITES)
        if latencies:
            result.write_p50 = statistics.median(latencies)
            result.write_max = max(latencies)

        result.false_positives, result.refuted = quiet_window(cluster, quiet)

        victim = cluster.n - 1
        victim_name = cluster.names[victim]
        killed = time.monotonic()
        cluster.kill(victim)

        def reports_dead(i: int) -> bool:
            return cluster.view(i).get(victim_name, ("absent", None))[0] == "dead"

        dead = wait_each(everyone[:-1], reports_dead, DETECT_TIMEOUT, POLL_INTERVAL)
        if len(dead) < cluster.n - 1:
            result.notes.append(f"kill -9: {len(dead)}/{cluster.n - 1} reported it dead in time")
        else:
            result.detect = max(dead.values()) - killed
        if not all(p is not None and p.poll() is None for p in cluster.processes[:-1]):
            result.notes.append("a process other than the killed one exited during the run")
        return result
    finally:
        cluster.stop()


def quiet_window(cluster: Cluster, seconds: float) -> tuple[int, int | None]:
    """(observer/member pairs seen not alive, suspicions raised but refuted) over `seconds`."""
    marks_before = cluster.suspicion_marks()
    incarnations_before = own_incarnations(cluster)
    flagged: set[tuple[int, str, str]] = set()
    end = time.monotonic() + seconds

    def watch(i: int) -> bool:
        for name, (status, _) in cluster.view(i).items():
            if status != "alive":
                flagged.add((i, name, status))
        return time.monotonic() >= end

    wait_each(range(cluster.n), watch, seconds + 5.0, QUIET_POLL_INTERVAL)
    for observer, name, status in sorted(flagged):
        print(f"    false positive: {cluster.names[observer]} saw {name} {status}", flush=True)
    pairs = len({(observer, name) for observer, name, _ in flagged})
    marks_after = cluster.suspicion_marks()
    if marks_before is not None and marks_after is not None:
        return pairs, marks_after - marks_before
    incarnations_after = own_incarnations(cluster)
    if incarnations_before is None or incarnations_after is None:
        return pairs, None
    return pairs, sum(incarnations_after[i] - incarnations_before[i] for i in incarnations_before)


def own_incarnations(cluster: Cluster) -> dict[int, int] | None:
    """Each node's incarnation as it reports itself (None if the system does not show them)."""
    found = {}
    for i, name in enumerate(cluster.names):
        try:
            incarnation = cluster.view(i)[name][1]
        except (OSError, KeyError, ValueError, http.client.HTTPException, SerfError):
            return None
        if incarnation is None:
            return None
        found[i] = incarnation
    return found


# --- Serf ------------------------------------------------------------------------------------


def find_serf() -> str | None:
    """The serf binary; installed with apt-get when missing and we are root."""
    path = shutil.which("serf")
    if path is not None:
        return path
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(
            "Serf is not installed and this is not root: install it with "
            "`sudo apt-get install -y serf` (Debian/Ubuntu) or from "
            "https://github.com/hashicorp/serf/releases; the Serf columns are skipped.\n"
        )
        return None
    print("Serf is not installed: running `apt-get install -y serf` ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-o", "DPkg::Lock::Timeout=120", "serf"]
    for command in (install, ["apt-get", "update"], install):
        try:
            done = subprocess.run(command, env=env, capture_output=True, timeout=600.0)
        except subprocess.TimeoutExpired:
            break
        if command is install and done.returncode == 0:
            break
    path = shutil.which("serf")
    if path is None:
        print("apt-get could not install serf; the Serf columns are skipped.\n")
    return path


def serf_version(serf: str) -> str:
    """The first line of `serf version`."""
    try:
        out = subprocess.run([serf, "version"], capture_output=True, timeout=10.0).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.decode(errors="replace").splitlines()[0] if out else "unknown"


# --- the report ------------------------------------------------------------------------------


def seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def count(value: int | None) -> str:
    return "n/a" if value is None else str(value)


def ratio(ours: float | None, serf: float | None) -> float | None:
    if ours is None or serf is None or serf <= 0:
        return None
    return ours / serf


METRICS: list[tuple[str, str, Callable[[Result], Any], Callable[[Any], str]]] = [
    ("join", "join -> all alive, from the seed's start", lambda r: r.join, seconds),
    (
        "join_after",
        "  of which after the last process answered",
        lambda r: r.join_after_ready,
        seconds,
    ),
    ("write_p50", "write/event -> visible on all, p50", lambda r: r.write_p50, seconds),
    ("write_max", "write/event -> visible on all, max", lambda r: r.write_max, seconds),
    ("fp", "false positives in the quiet window (pairs)", lambda r: r.false_positives, count),
    ("refuted", "suspicions raised and refuted in the window", lambda r: r.refuted, count),
    ("detect", "kill -9 -> all mark it dead", lambda r: r.detect, seconds),
]


def report(results: dict[tuple[str, int], Result], sizes: list[int], labels: list[str]) -> None:
    """Print the table, the goals and any notes."""
    serf_label = "Serf"
    prod_label = "ours (production)"
    print("\n| metric | N | " + " | ".join(labels) + " | ours prod / Serf |")
    print("|---|---:|" + "---:|" * len(labels) + "---:|")
    for _, title, get, show in METRICS:
        for n in sizes:
            cells = [
                show(get(results[(label, n)])) if (label, n) in results else "skipped"
                for label in labels
            ]
            prod = results.get((prod_label, n))
            serf = results.get((serf_label, n))
            factor = None
            if prod is not None and serf is not None and show is seconds:
                factor = ratio(get(prod), get(serf))
            shown = "" if show is not seconds else ("n/a" if factor is None else f"{factor:.2f}x")
            print(f"| {title} | {n} | " + " | ".join(cells) + f" | {shown} |")

    print("\nGoals (ours with production timings against Serf's LAN defaults, probe 1 s):")
    for n in sizes:
        prod, serf = results.get((prod_label, n)), results.get((serf_label, n))
        if prod is None or serf is None:
            print(f"  N={n}: no Serf figures to compare with")
            continue
        join = ratio(prod.join, serf.join)
        detect = ratio(prod.detect, serf.detect)
        join_met = join is not None and join <= 1.0
        detect_met = detect is not None and detect <= 0.5 and prod.false_positives == 0
        print(
            f"  N={n}: join <= 1.0x Serf: {fmt_ratio(join)} -> {'met' if join_met else 'NOT met'}"
            f"; detection <= 0.5x Serf with no false positives: {fmt_ratio(detect)}, "
            f"{count(prod.false_positives)} false positives -> "
            f"{'met' if detect_met else 'NOT met'}"
        )
    for (label, n), result in results.items():
        for note in result.notes:
            print(f"  note: {label} N={n}: {note}")


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f}x"


def main(argv: list[str] | None = None) -> int:
    """Run every cluster at every size and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=5 only, 5 writes, 10 s quiet")
    parser.add_argument("--skip-serf", action="store_true", help="measure our nodes only")
    parser.add_argument("--quiet", type=float, help="quiet window in seconds (default 30)")
    parser.add_argument("--sizes", help="comma-separated cluster sizes (default 5,15)")
    parser.add_argument(
        "--systems", help="comma-separated subset of dev,prod,serf (default: all three)"
    )
    args = parser.parse_args(argv)
    sizes = [5] if args.quick else [5, 15]
    if args.sizes:
        sizes = [int(n) for n in args.sizes.split(",")]
    systems = set((args.systems or "dev,prod,serf").split(","))
    writes = 5 if args.quick else 20
    quiet = args.quiet if args.quiet is not None else (10.0 if args.quick else 30.0)

    serf = None if args.skip_serf or "serf" not in systems else find_serf()
    dev, prod = Config.development(), Config.production()
    print(
        f"# Membership benchmark: ours against Serf ({os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, Serf {serf_version(serf) if serf else 'skipped'})\n"
    )
    print(
        f"ours (development): probe {dev.probe_interval:g} s, timeout {dev.probe_timeout:g} s, "
        f"gossip {dev.gossip_interval:g} s, plaintext\n"
        f"ours (production):  probe {prod.probe_interval:g} s, timeout {prod.probe_timeout:g} s, "
        f"gossip {prod.gossip_interval:g} s, AES-GCM cluster key\n"
        "Serf: -profile=lan (memberlist DefaultLANConfig: probe 1 s, timeout 500 ms, gossip "
        "200 ms), -encrypt key\n"
        f"polls: views every {POLL_INTERVAL * 1000:g} ms, our write GETs every "
        f"{WRITE_POLL_INTERVAL * 1000:g} ms, quiet window {quiet:g} s polled every "
        f"{QUIET_POLL_INTERVAL * 1000:g} ms; {writes} writes per cluster\n",
        flush=True,
    )

    labels = [
        label
        for label, key in (("ours (development)", "dev"), ("ours (production)", "prod"))
        if key in systems
    ] + (["Serf"] if serf else [])
    results: dict[tuple[str, int], Result] = {}
    with tempfile.TemporaryDirectory(prefix="bench-membership-") as tmp:
        workdir = Path(tmp)
        key_file = workdir / "cluster.key"
        key_file.write_text(key_to_text(generate_key()) + "\n")
        key_file.chmod(0o600)
        serf_key = key_to_text(generate_key())
        for n in sizes:
            for label in labels:
                folder = workdir / f"{label.split()[-1].strip('()')}-{n}"
                folder.mkdir()
                cluster: Cluster
                if label == "Serf":
                    assert serf is not None
                    cluster = SerfCluster(n, folder, serf, serf_key)
                elif label == "ours (production)":
                    cluster = OurCluster(n, folder, "production", key_file)
                else:
                    cluster = OurCluster(n, folder, "development", None)
                print(f"  {label}, N={n} ...", flush=True)
                began = time.monotonic()
                result = results[(label, n)] = measure(cluster, writes, quiet)
                print(
                    f"    join {seconds(result.join)}, write p50 {seconds(result.write_p50)}, "
                    f"false positives {count(result.false_positives)}, "
                    f"kill -9 {seconds(result.detect)} "
                    f"({time.monotonic() - began:.0f} s)",
                    flush=True,
                )
                for note in result.notes:
                    print(f"    note: {note}", flush=True)
    report(results, sizes, labels)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
