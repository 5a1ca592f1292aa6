"""A durable writer to be killed, and the harness that kills it.

As a script (`python crash_writer.py DATA_DIR`): start a node on DATA_DIR, print the keys it
restored as one JSON line (`{"have": [...]}`), then write keys `k<n>` one by one, each made
durable before its name is printed (flushed): a printed key is an acknowledged durable write.

As a module: `kill_cycles(data_dir, cycles, seed)` starts the writer, `kill -9`s it at a random
moment, restarts it on the same data dir, and checks after each restart that every key
acknowledged so far was restored. Used by tests/integration/test_crash_durability.py and
bench/soak_crash.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

MAX_WRITES = 1_000_000  # a bound on the writing loop; a run is killed long before
SNAPSHOT_LOG_ROWS = 40  # snapshot often, so kills also land in compaction


async def write_forever(data_dir: str) -> None:
    """Restore, report what was restored, then write and acknowledge durable keys."""
    from crdts import LWWMap
    from foundation_p2p.config import Config
    from foundation_p2p.node import Node

    config = Config.development(snapshot_log_rows=SNAPSHOT_LOG_ROWS, snapshot_interval=0.5)
    node = Node(cluster="crash", node_id="writer", data_dir=data_dir, config=config, discovery=None)
    await node.start()
    shared_state = getattr(node, "shared_state", None)
    if shared_state is not None:  # SharedState (issue D1) has landed: write through it
        state = shared_state("crash")
        have = sorted(str(key) for key in state)
        api = "SharedState.set(durable=True)"

        async def write(key: str) -> None:
            await state.set(key, True, durable=True)
    else:
        replica = node.replica("state/crash", LWWMap)
        have = sorted(str(key) for key in replica.value)
        api = "replica + flush_durable()"

        async def write(key: str) -> None:
            replica.set(key, True)
            await node.flush_durable()

    print(json.dumps({"have": have, "api": api}), flush=True)
    start = 1 + max((int(key[1:]) for key in have), default=0)
    for n in range(start, start + MAX_WRITES):
        key = f"k{n}"
        await write(key)
        print(key, flush=True)


@dataclass
class CycleResult:
    """What a run of kill cycles saw."""

    seed: int
    cycles: int = 0
    acknowledged: int = 0
    restored_checks: int = 0
    killed_before_ready: int = 0
    api: str = ""
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0


class _Writer:
    """One writer process and a thread collecting its stdout lines."""

    def __init__(self, data_dir: Path, log_file: Path) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._log = open(log_file, "ab")  # closed by kill()
        self.process = subprocess.Popen(
            [sys.executable, __file__, str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.append(raw.decode().strip())
            self.ready.set()

    def wait_ready(self, timeout: float) -> bool:
        """Wait for the first line; False if the process exited or the time ran out first."""
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                return self.ready.is_set()
        return True

    def kill(self) -> None:
        """kill -9, by pid, and collect every line it printed."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        self._log.close()

    def api(self) -> str:
        """How the writer wrote: through SharedState or a plain replica."""
        return str(json.loads(self.lines[0]).get("api", "")) if self.have() is not None else ""

    def have(self) -> set[str] | None:
        """The keys it restored at start, if it got that far."""
        if not self.lines or not self.lines[0].startswith("{"):
            return None
        return set(json.loads(self.lines[0])["have"])

    def acknowledged(self) -> list[str]:
        """Keys it printed as durable (a last, partial line is not an acknowledgement)."""
        return [line for line in self.lines[1:] if line.startswith("k") and line[1:].isdigit()]


def kill_cycles(
    data_dir: Path, cycles: int, seed: int, max_alive: float = 0.3, ready_timeout: float = 30.0
) -> CycleResult:
    """Kill and restart the writer `cycles` times; check every acknowledged key survives."""
    rng = random.Random(seed)
    result = CycleResult(seed)
    acknowledged: set[str] = set()
    began = time.monotonic()
    log_file = data_dir.parent / f"{data_dir.name}-writer.log"
    for cycle in range(cycles + 1):  # the last start only checks
        last = cycle == cycles
        writer = _Writer(data_dir, log_file)
        try:
            if last or rng.random() < 0.8:
                if not writer.wait_ready(ready_timeout):
                    tail = log_file.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"writer never reported ({log_file}):\n{tail}")
                if not last:
                    time.sleep(rng.uniform(0.0, max_alive))  # a random moment mid-stream
            else:
                time.sleep(rng.uniform(0.0, 0.5))  # a random moment during start and restore
                result.killed_before_ready += 1
        finally:
            writer.kill()
        have = writer.have()
        if have is not None:
            result.api = writer.api()
            result.restored_checks += 1
            result.missing.extend(sorted(acknowledged - have))
        acknowledged.update(writer.acknowledged())
        result.cycles = cycle
    result.acknowledged = len(acknowledged)
    result.seconds = time.monotonic() - began
    return result


if __name__ == "__main__":
    asyncio.run(write_forever(sys.argv[1]))
