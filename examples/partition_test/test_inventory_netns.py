"""The same promise on real processes and a real cut: three `foundation-p2p node` processes,
each in its own network namespace, split by nftables, written on both sides, healed.

Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN), iproute2 and nftables; skipped with the
reason otherwise. Traffic stays inside the lab's namespaces: it cannot leave the machine.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simulations.netlab import NetLab, NetLabError

try:
    NetLab.check()
except NetLabError as exc:
    pytest.skip(f"needs a network lab: {exc}", allow_module_level=True)

pytestmark = pytest.mark.timeout(90)


def node_command(lab: NetLab, host: int) -> list[str]:
    """The node on `host`, seeded with host 0."""
    address = lab.address(host)
    command = [
        sys.executable, "-m", "foundation_p2p", "node", "--cluster", "inventory",
        "--node-id", f"w{host}", "--listen", f"{address}:7946", "--http", f"{address}:8080",
        "--profile", "development",
    ]  # fmt: skip
    return command + (["--seeds", f"{lab.address(0)}:7946"] if host else [])


def state(lab: NetLab, host: int) -> dict[str, Any]:
    """The SharedState "stock" as host `host` serves it, asked from inside the lab."""
    reply = lab.request(host, "GET", f"http://{lab.address(host)}:8080/state/stock")
    return reply.json() if reply.status == 200 else {}  # type: ignore[no-any-return]


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (OSError, TimeoutError):  # not listening yet, or cut off
            pass
        assert time.monotonic() < deadline, f"not within {timeout} s"
        time.sleep(0.1)


def test_writes_on_both_sides_of_a_real_cut_all_arrive(tmp_path: Path) -> None:
    with NetLab(hosts=3, prefix="invex") as lab:
        for host in range(3):
            with (tmp_path / f"w{host}.log").open("wb") as log:
                lab.spawn(host, node_command(lab, host), stdout=log, stderr=log)

        def members(host: int) -> int:
            url = f"http://{lab.address(host)}:8080/members"
            return len(lab.request(host, "GET", url).json()["members"])

        eventually(lambda: all(members(h) == 3 for h in range(3)))

        lab.partition([0], [1, 2])
        put = "http://{}:8080/state/stock/{}"
        lab.request(0, "PUT", put.format(lab.address(0), "received-alone"), 10)
        lab.request(2, "PUT", put.format(lab.address(2), "received-together"), 7)
        eventually(lambda: state(lab, 1).get("received-together") == 7)  # each side works
        assert "received-alone" not in state(lab, 1)  # and the cut is real

        lab.heal()
        expected = {"received-alone": 10, "received-together": 7}
        eventually(lambda: all(state(lab, h) == expected for h in range(3)), timeout=30.0)
    # leaving the block stopped every process in the lab and removed the lab
