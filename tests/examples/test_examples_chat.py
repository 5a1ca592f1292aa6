"""examples/chat as two users run it: two processes on loopback see each other arrive, talk,
and see each other leave. Both are stopped by pid whatever happens."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "chat" / "chat.py"


class Participant:
    """One chat.py process; its output lines arrive on a queue read by a thread."""

    def __init__(self, user: str, room: str, *options: str) -> None:
        self.user = user
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--user", user, "--room", room, *options],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait (bounded) for an output line matching `pattern`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"{self.user} never printed {pattern!r}; it printed {self.seen}")

    def type(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(5)


def test_two_users_meet_talk_and_see_each_other_leave() -> None:
    room = f"smoke-{uuid.uuid4().hex[:8]}"
    ada = Participant("ada", room, "--listen", "127.0.0.1:0")
    bob: Participant | None = None
    try:
        address = ada.expect(r"you are ada on (127\.0\.0\.1:\d+)").group(1)
        bob = Participant("bob", room, "--seeds", address)
        ada.expect(r"^\* bob joined$")
        bob.expect(r"^\* ada joined$")
        bob.type("hello ada")
        ada.expect(r"^<bob> hello ada$")
        ada.type("hi bob")
        bob.expect(r"^<ada> hi bob$")
        ada.type("/who")
        ada.expect(r"^\* here: ada, bob$")
        assert bob.process.stdin is not None
        bob.process.stdin.close()  # Ctrl-D: bob leaves gracefully
        bob.expect(r"^\* bob leaving$")
        assert bob.process.wait(10) == 0
        ada.expect(r"^\* bob left$")
        ada.process.terminate()
        assert ada.process.wait(10) == 0
    finally:
        ada.stop()
        if bob is not None:
            bob.stop()
