"""Partition soak: real `foundation-p2p node` processes in a NetLab, cut and healed many times.

Run (as root, with iproute2 and nftables): python -m bench.soak_partitions [--cycles N]

Five nodes (development timings), one per network namespace, seeded with host 0. Each cycle
cuts {0,1} | {2,3,4} with nftables, waits until each side declares the other dead (then
--hold more seconds, default 0), writes a key on each side plus one key on both, heals, and
measures wall-clock seconds until every replica of the shared state is equal and holds every
write, then until everybody is alive in every member table. Every request is sent from inside
the lab; every wait has a deadline.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from simulations.netlab import NetLab, NetLabError, node_command  # noqa: E402

HOSTS = 5
SIDE_A, SIDE_B = (0, 1), (2, 3, 4)
GOSSIP_PORT, HTTP_PORT = 7946, 8080
STATE = "soak"
DETECT_DEADLINE, CONVERGE_DEADLINE, START_DEADLINE = 30.0, 60.0, 30.0
POLL = 0.05


class Cycle:
    """The figures of one partition/heal cycle, in seconds."""

    def __init__(self, detected: float, converged: float, rejoined: float) -> None:
        self.detected, self.converged, self.rejoined = detected, converged, rejoined


class Soak:
    """Five nodes in a lab, driven over HTTP from inside it."""

    def __init__(self, lab: NetLab, logs: Path, hold: float = 0.0) -> None:
        self.lab, self.logs, self.hold = lab, logs, hold
        self.expected: dict[str, Any] = {}

    def start(self) -> None:
        """Start every node and wait until all see each other alive."""
        for host in range(HOSTS):
            address = self.lab.address(host)
            seeds = [f"{self.lab.address(0)}:{GOSSIP_PORT}"] if host else []
            command = node_command("soak", f"n{host}", address, GOSSIP_PORT, HTTP_PORT, seeds)
            with (self.logs / f"n{host}.log").open("wb") as log:
                self.lab.spawn(host, command, stdout=log, stderr=log)
        self.wait(self.all_alive, START_DEADLINE, "the cluster forms")

    def get(self, host: int, path: str) -> Any:
        """The JSON body of GET `path` on the node of `host` (None on a 404)."""
        url = f"http://{self.lab.address(host)}:{HTTP_PORT}{path}"
        reply = self.lab.request(host, "GET", url)
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise ConnectionError(f"GET {path} on n{host}: {reply.status} {reply.body}")
        return reply.json()

    def put(self, host: int, key: str, value: Any) -> None:
        """Write one key through the node of `host`."""
        url = f"http://{self.lab.address(host)}:{HTTP_PORT}/state/{STATE}/{key}"
        reply = self.lab.request(host, "PUT", url, value)
        if reply.status != 200:
            raise RuntimeError(f"PUT {key} on n{host}: {reply.status} {reply.body}")

    def statuses(self, host: int) -> dict[str, str]:
        """Member id -> status in the node's table."""
        members = self.get(host, "/members")["members"]
        return {node: member["status"] for node, member in members.items()}

    def all_alive(self) -> bool:
        """Whether every node holds all five members alive."""
        return all(list(self.statuses(h).values()).count("alive") == HOSTS for h in range(HOSTS))

    def sides_dead(self) -> bool:
        """Whether every node holds every member across the cut dead."""
        for host in range(HOSTS):
            statuses = self.statuses(host)
            across = SIDE_B if host in SIDE_A else SIDE_A
            if any(statuses.get(f"n{other}") != "dead" for other in across):
                return False
        return True

    def converged(self, marks: set[str]) -> bool:
        """Whether all states are equal and hold every write and one conflicting value."""
        states = [self.get(h, f"/state/{STATE}") or {} for h in range(HOSTS)]
        return (
            all(state == states[0] for state in states)
            and all(states[0].get(k) == v for k, v in self.expected.items())
            and states[0].get("conflict") in marks
        )

    def cycle(self, number: int) -> Cycle:
        """Cut, wait for detection, write on both sides, heal, time convergence."""
        self.lab.partition(SIDE_A, SIDE_B)
        detected = self.wait(self.sides_dead, DETECT_DEADLINE, f"cycle {number}: detection")
        time.sleep(self.hold)
        marks: set[str] = set()
        for side, mark in ((SIDE_A, "a"), (SIDE_B, "b")):
            writer = side[number % len(side)]
            key = f"c{number}-{mark}"
            self.expected[key] = {"cycle": number, "by": f"n{writer}"}
            self.put(writer, key, self.expected[key])
            self.put(side[-1], "conflict", f"{mark}{number}")
            marks.add(f"{mark}{number}")
        self.lab.heal()
        healed = time.monotonic()
        deadline = CONVERGE_DEADLINE + self.hold
        converged = self.wait(
            lambda: self.converged(marks), deadline, f"cycle {number}: convergence"
        )
        self.wait(self.all_alive, deadline, f"cycle {number}: all alive")
        return Cycle(detected, converged, time.monotonic() - healed)

    def wait(self, check: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll `check` until true; the seconds it took (RuntimeError with members if never)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if check():
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(POLL)
        members = []
        for host in range(HOSTS):
            try:
                members.append(f"  n{host}: {self.statuses(host)}")
            except OSError as exc:
                members.append(f"  n{host}: unavailable ({exc})")
        raise RuntimeError(f"{what}: not within {timeout} s\n" + "\n".join(members))


def summary(label: str, values: list[float]) -> str:
    """min / median / p90 / max of `values` as one table row."""
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return (
        f"| {label} | {ordered[0]:.2f} | {statistics.median(ordered):.2f} | {p90:.2f} "
        f"| {ordered[-1]:.2f} |"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the soak; exit 0 if every cycle converged, 1 if one did not, 2 without a lab."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20, help="partition/heal cycles (20)")
    parser.add_argument(
        "--hold",
        type=float,
        default=0.0,
        help="seconds to keep the cut after both sides declared each other dead (0)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.cycles <= 1000:
        parser.error("--cycles must be 1..1000")
    if not 0.0 <= args.hold <= 600.0:
        parser.error("--hold must be 0..600 seconds")
    try:
        NetLab.check()
    except NetLabError as exc:
        print(f"soak_partitions: {exc}", file=sys.stderr)
        return 2
    logs = Path(tempfile.mkdtemp(prefix="soak-partitions-"))
    cycles: list[Cycle] = []
    started = time.monotonic()
    try:
        with NetLab(hosts=HOSTS, prefix="fp2psoak") as lab:
            soak = Soak(lab, logs, args.hold)
            soak.start()
            formed = time.monotonic() - started
            print(f"cluster of {HOSTS} formed in {formed:.1f} s; node logs in {logs}")
            print("| cycle | dead detected (s) | state equal after heal (s) | all alive (s) |")
            print("|---:|---:|---:|---:|")
            for number in range(args.cycles):
                cycle = soak.cycle(number)
                cycles.append(cycle)
                print(
                    f"| {number} | {cycle.detected:.2f} | {cycle.converged:.2f} "
                    f"| {cycle.rejoined:.2f} |",
                    flush=True,
                )
    except RuntimeError as exc:
        print(f"FAILED after {len(cycles)} cycles: {exc}\nnode logs: {logs}", file=sys.stderr)
        return 1
    shutil.rmtree(logs, ignore_errors=True)
    print(f"\n{len(cycles)} cycles in {time.monotonic() - started:.0f} s; after every heal all")
    print(f"{HOSTS} nodes held all {len(soak.expected)} writes so far.\n")
    print("| seconds | min | median | p90 | max |")
    print("|---|---:|---:|---:|---:|")
    print(summary("dead detected after the cut", [c.detected for c in cycles]))
    print(summary("state equal after the heal", [c.converged for c in cycles]))
    print(summary("all alive after the heal", [c.rejoined for c in cycles]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
