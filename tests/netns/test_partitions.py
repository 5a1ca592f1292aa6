"""Real partitions: `foundation-p2p node` processes in network namespaces, cut with nftables.

Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN), iproute2 and nftables; skipped otherwise. Every
request to a node is sent from inside a lab namespace (NetLab.request), never from this one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from simulations.netlab import NetLab, NetLabError, node_command


def _lab_unavailable() -> str | None:
    """Why no network lab can be built here, or None if one can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux-only"
    try:
        NetLab.check()
    except NetLabError as exc:
        return str(exc)
    return None


_REASON = _lab_unavailable()
if _REASON is not None:
    pytest.skip(f"real-partition tests need a network lab: {_REASON}", allow_module_level=True)

GOSSIP_PORT, HTTP_PORT = 7946, 8080
STATE = "plant"
CYCLES = 5
SIDE_A, SIDE_B = (0, 1), (2, 3, 4)
POLL = 0.05  # seconds between two looks at the cluster


class LabCluster:
    """`foundation-p2p node` processes, one per lab host, driven over HTTP from inside the lab."""

    def __init__(self, lab: NetLab, logs: Path) -> None:
        self.lab, self.logs = lab, logs
        self.hosts: list[int] = []

    def start(self, host: int, seeds: Sequence[int] = (), mdns: bool = False) -> None:
        """Start the node of `host` (id n<host>); return once its HTTP API answers."""
        address = self.lab.address(host)
        seed_addresses = [f"{self.lab.address(s)}:{GOSSIP_PORT}" for s in seeds or ()]
        command = node_command(
            "netlab-it", f"n{host}", address, GOSSIP_PORT, HTTP_PORT, seed_addresses, mdns
        )
        with self.log(host).open("wb") as log:
            self.lab.spawn(host, command, stdout=log, stderr=log)
        self.hosts.append(host)
        self.wait(lambda: self.get(host, "/health") is not None, 20.0, f"n{host} serves HTTP")

    def log(self, host: int) -> Path:
        """The file holding the node's output."""
        return self.logs / f"n{host}.log"

    def get(self, host: int, path: str) -> Any:
        """GET `path` from the node of `host`: the JSON body, or None on a 404."""
        reply = self.lab.request(host, "GET", f"http://{self.lab.address(host)}:{HTTP_PORT}{path}")
        if reply.status == 404:
            return None
        assert reply.status == 200, f"GET {path} on n{host}: {reply.status} {reply.body}"
        return reply.json()

    def put(self, host: int, key: str, value: Any) -> None:
        """Write `key` = `value` into the shared state through the node of `host`."""
        url = f"http://{self.lab.address(host)}:{HTTP_PORT}/state/{STATE}/{key}"
        reply = self.lab.request(host, "PUT", url, value)
        assert reply.status == 200, f"PUT {key} on n{host}: {reply.status} {reply.body}"

    def state(self, host: int) -> dict[str, Any]:
        """The node's view of the shared state ({} before its first key)."""
        return self.get(host, f"/state/{STATE}") or {}

    def statuses(self, host: int) -> dict[str, str]:
        """Member id -> status as the node of `host` sees it."""
        members = self.get(host, "/members")["members"]
        return {node: member["status"] for node, member in members.items()}

    def wait(self, check: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll `check` until true; seconds taken, or AssertionError with diagnostics."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            try:
                if check():
                    return time.monotonic() - started
            except OSError:
                pass  # a node not listening yet, or a request cut by a partition
            if time.monotonic() > deadline:
                raise AssertionError(f"not reached within {timeout} s: {what}\n{self.diagnose()}")
            time.sleep(POLL)

    def diagnose(self) -> str:
        """Each node's members and state, and the tail of its log."""
        lines = ["--- lab rules ---", self.lab.rules()]
        for host in self.hosts:
            lines.append(f"--- n{host} ({self.lab.address(host)}) ---")
            for what, path in (("members", "/members"), ("state", f"/state/{STATE}")):
                try:
                    lines.append(f"{what}: {self.get(host, path)}")
                except (OSError, AssertionError) as exc:
                    lines.append(f"{what}: unavailable ({exc})")
            tail = self.log(host).read_text(errors="replace").splitlines()[-15:]
            lines.extend(f"  | {line}" for line in tail)
        return "\n".join(lines)


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """A folder for the nodes' output."""
    return tmp_path


@pytest.fixture
def five(logs: Path) -> Iterator[LabCluster]:
    """Five nodes in five namespaces, seeded with host 0, all alive in everybody's view."""
    with NetLab(hosts=5, prefix="fp2p") as lab:
        cluster = LabCluster(lab, logs)
        for host in range(5):
            cluster.start(host, seeds=[0] if host else [])
        everyone = {f"n{h}" for h in range(5)}
        cluster.wait(
            lambda: all(_alive(cluster, h) == everyone for h in range(5)),
            30.0,
            "the five nodes see each other alive",
        )
        yield cluster


def _alive(cluster: LabCluster, host: int) -> set[str]:
    """The members the node of `host` holds alive."""
    return {node for node, status in cluster.statuses(host).items() if status == "alive"}


NAMES = {host: f"n{host}" for host in range(5)}


@pytest.mark.timeout(200)
def test_both_sides_write_through_repeated_partitions_and_converge(five: LabCluster) -> None:
    """Five cycles of cut {0,1} | {2,3,4}, write on both sides, heal: no write is lost."""
    expected: dict[str, Any] = {}
    worst = 0.0
    for cycle in range(CYCLES):
        detected, converged, rejoined = _partition_write_heal(five, cycle, expected)
        worst = max(worst, converged)
        print(
            f"cycle {cycle}: dead detected in {detected:.2f} s; after the heal, state equal in "
            f"{converged:.2f} s, members all alive in {rejoined:.2f} s"
        )
    print(f"{CYCLES} cycles: state converged in at most {worst:.2f} s after a heal")


def _partition_write_heal(
    cluster: LabCluster, cycle: int, expected: dict[str, Any]
) -> tuple[float, float, float]:
    """One cycle; seconds to detect the cut, then to equal state and to all-alive after the heal."""
    lab = cluster.lab
    lab.partition(SIDE_A, SIDE_B)
    across = [(h, NAMES[o]) for h in range(5) for o in range(5) if (h in SIDE_A) != (o in SIDE_A)]
    detected = cluster.wait(
        lambda: all(cluster.statuses(h)[other] == "dead" for h, other in across),
        30.0,
        f"cycle {cycle}: each side declares the other dead",
    )
    writes = {
        SIDE_A: (SIDE_A[cycle % 2], f"c{cycle}-a", f"a{cycle}"),
        SIDE_B: (SIDE_B[cycle % 3], f"c{cycle}-b", f"b{cycle}"),
    }
    for side, (writer, key, mark) in writes.items():
        expected[key] = {"cycle": cycle, "by": NAMES[writer]}
        cluster.put(writer, key, expected[key])
        cluster.put(side[-1], "conflict", mark)  # the same key written on both sides
    for side, (_, key, mark) in writes.items():
        _wait_side_reads(cluster, side, {key: expected[key], "conflict": mark}, cycle)
    for side, (_, key, _) in writes.items():
        for host in (h for h in range(5) if h not in side):
            assert key not in cluster.state(host), f"cycle {cycle}: {key} crossed the cut"

    lab.heal()
    healed = time.monotonic()
    marks = {mark for _, _, mark in writes.values()}
    converged = cluster.wait(
        lambda: _converged(cluster, expected, marks),
        30.0,
        f"cycle {cycle}: all five replicas equal, with every write, after the heal",
    )
    everyone = set(NAMES.values())
    cluster.wait(
        lambda: all(_alive(cluster, h) == everyone for h in range(5)),
        30.0,
        f"cycle {cycle}: everybody alive again after the heal",
    )
    return detected, converged, time.monotonic() - healed


def _wait_side_reads(
    cluster: LabCluster, side: Sequence[int], want: dict[str, Any], cycle: int
) -> None:
    """Wait until every node of `side` reads the values in `want`."""
    cluster.wait(
        lambda: all(
            all(cluster.state(h).get(key) == value for key, value in want.items()) for h in side
        ),
        10.0,
        f"cycle {cycle}: side {list(side)} reads its own writes on every node",
    )


def _converged(cluster: LabCluster, expected: dict[str, Any], conflict: set[str]) -> bool:
    """All five states equal, holding every expected write and one of the conflicting values."""
    states = [cluster.state(h) for h in range(5)]
    first = states[0]
    return (
        all(state == first for state in states)
        and all(first.get(key) == value for key, value in expected.items())
        and first.get("conflict") in conflict
    )


@pytest.mark.timeout(120)
def test_mdns_finds_peers_across_namespaces(logs: Path) -> None:
    """Three nodes with --mdns and no seeds form one cluster and replicate a write."""
    with NetLab(hosts=3, prefix="fp2pm") as lab:
        cluster = LabCluster(lab, logs)
        started = time.monotonic()
        for host in range(3):
            cluster.start(host, mdns=True)
        everyone = {"n0", "n1", "n2"}
        cluster.wait(
            lambda: all(_alive(cluster, h) == everyone for h in range(3)),
            45.0,
            "three mDNS nodes see each other alive",
        )
        cluster.put(2, "found-by", "mdns")
        cluster.wait(
            lambda: all(cluster.state(h).get("found-by") == "mdns" for h in range(3)),
            15.0,
            "a write on n2 reaches n0 and n1",
        )
        took = time.monotonic() - started
        print(f"mDNS: three nodes started, found each other and replicated in {took:.2f} s")
