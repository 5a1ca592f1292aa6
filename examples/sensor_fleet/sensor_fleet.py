"""A sensor fleet: every device writes its readings to a SharedState, a dashboard node reads
them all, and a partition cuts half the fleet off for a while without losing a reading.

Run: python examples/sensor_fleet/sensor_fleet.py [--devices 4] [--cut-seconds 3]

All nodes run in this one process on 127.0.0.1 (no discovery: devices join the dashboard by
address). The cut is each cut-off device's own fault injection (`fault_injection=True`, the
`--demo-faults` of `foundation-p2p node`): it drops every frame to and from its peers, as a
firewall dropping packets would, while the device keeps measuring and writing locally.
Exit code 0 once the dashboard holds every reading every device wrote, 1 if not in time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
from collections.abc import Callable

from foundation_p2p import Config, Node

READINGS = "readings"  # the SharedState: key "<device>/<seq>" -> {"celsius": ..., "at": ...}
PERIOD = 0.1  # seconds between two readings of one device


class Device:
    """A node that writes one temperature reading every PERIOD seconds."""

    def __init__(self, name: str, dashboard: str, config: Config) -> None:
        self.name = name
        self.node = Node(
            cluster="fleet",
            node_id=name,
            listen="127.0.0.1:0",
            seeds=[dashboard],
            config=config,
            fault_injection=True,
        )
        self.written = 0
        self._rng = random.Random(name)

    async def measure(self, stop: asyncio.Event) -> None:
        """Write readings until `stop` is set; a local write never waits on the network."""
        readings = self.node.shared_state(READINGS)
        while not stop.is_set():
            self.written += 1
            celsius = round(20.0 + self._rng.gauss(0, 1.5), 2)
            readings[f"{self.name}/{self.written:05d}"] = {"celsius": celsius, "at": time.time()}
            await asyncio.sleep(PERIOD)


def per_device(dashboard: Node) -> dict[str, int]:
    """How many readings of each device the dashboard holds."""
    counts: dict[str, int] = {}
    for key in dashboard.shared_state(READINGS).keys():
        device = key.partition("/")[0]
        counts[device] = counts.get(device, 0) + 1
    return counts


def show(dashboard: Node, devices: list[Device], label: str) -> None:
    """One dashboard frame: each device's status, readings written and readings received."""
    counts, members = per_device(dashboard), dashboard.members()
    cells = [
        f"{d.name} {members.get(d.name, '?'):7} {counts.get(d.name, 0):3}/{d.written:<3}"
        for d in devices
    ]
    print(f"{label:12} | " + " | ".join(cells), flush=True)


async def until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll `condition()` every 50 ms for at most `timeout` seconds; whether it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def run(device_count: int, cut_seconds: float) -> int:
    config = Config.development(probe_interval=0.1, probe_timeout=0.05)
    dashboard = Node(cluster="fleet", node_id="dashboard", listen="127.0.0.1:0", config=config)
    await dashboard.start()
    devices = [Device(f"dev-{i}", dashboard.address, config) for i in range(1, device_count + 1)]
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        for device in devices:
            await device.node.start()
        if not await until(lambda: len(dashboard.members()) == device_count + 1, 10.0):
            print("the fleet never formed", file=sys.stderr)
            return 1
        print(
            f"fleet formed: {device_count} devices and a dashboard; columns: "
            "device, status as the dashboard sees it, readings received/written"
        )
        tasks = [asyncio.create_task(d.measure(stop)) for d in devices]
        for _ in range(4):
            await asyncio.sleep(0.25)
            show(dashboard, devices, "connected")

        cut = devices[device_count // 2 :]
        for device in cut:
            assert device.node.fault is not None
            device.node.fault.cut_for(cut_seconds + 30.0)  # healed below; heals itself anyway
        print(
            f"-- cutting {', '.join(d.name for d in cut)} off for {cut_seconds:g} s; "
            "they keep measuring"
        )
        ticks = max(1, round(cut_seconds / 0.5))
        for _ in range(ticks):
            await asyncio.sleep(cut_seconds / ticks)
            show(dashboard, devices, "partitioned")
        for device in cut:
            assert device.node.fault is not None
            device.node.fault.heal()
        print("-- healed")
        stop.set()
        await asyncio.gather(*tasks)
        healed = time.monotonic()

        def complete() -> bool:
            counts = per_device(dashboard)
            return all(counts.get(d.name, 0) == d.written for d in devices)

        done = await until(complete, 20.0)
        show(dashboard, devices, "after heal")
        if not done:
            print("the dashboard is missing readings", file=sys.stderr)
            return 1
        total = sum(d.written for d in devices)
        print(
            f"every reading present: {total} readings from {device_count} devices, "
            f"{time.monotonic() - healed:.1f} s after the heal"
        )
        return 0
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for device in devices:
            await device.node.stop()
        await dashboard.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=4, help="how many devices (4)")
    parser.add_argument("--cut-seconds", type=float, default=3.0, help="partition length (3)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="  (%(name)s: %(message)s)")
    if args.devices < 2 or not 0 < args.cut_seconds <= 60:
        parser.error("--devices must be at least 2, --cut-seconds in (0, 60]")
    return asyncio.run(run(args.devices, args.cut_seconds))


if __name__ == "__main__":
    sys.exit(main())
