"""`foundation-p2p demo` as a user runs it: a real subprocess, three real node processes on
loopback, narrated milestones, under 30 s, every process stopped (also on Ctrl-C)."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from foundation_p2p import demo

pytestmark = pytest.mark.timeout(120)

MILESTONES = [
    "starting nodes a, b, c as separate processes",
    "cluster formed: every node sees a, b, c alive",
    "dashboard: http://127.0.0.1:",
    "every node holds all 3 readings",
    "cutting c off",
    "partition seen on both sides",
    "both sides accepted writes",
    "the sides differ",
    "healing",
    "converged",
    "every write present",
    "demo passed in",
]
PID_LINE = re.compile(r"^\s+([abc]): pid (\d+),", re.MULTILINE)


def demo_command(*args: str) -> list[str]:
    """The installed `foundation-p2p` script beside this interpreter, else `python -m`."""
    script = Path(sys.executable).with_name("foundation-p2p")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "foundation_p2p"]
    return [*base, "demo", *args]


def start_demo(*args: str) -> subprocess.Popen[str]:
    # its own process group: should the demo hang, the group (it and its nodes) is killed by id
    return subprocess.Popen(
        demo_command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def finish(process: subprocess.Popen[str], timeout: float) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(f"the demo did not finish within {timeout} s:\n{output}") from None
    return output


def assert_gone(pids: list[int]) -> None:
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_the_demo_shows_a_partition_and_a_heal_in_under_30_seconds() -> None:
    started = time.monotonic()
    process = start_demo("--no-browser")
    output = finish(process, timeout=90.0)
    wall = time.monotonic() - started
    assert process.returncode == 0, output
    position = 0
    for milestone in MILESTONES:
        found = output.find(milestone, position)
        assert found >= 0, f"missing or out of order: {milestone!r}\n{output}"
        position = found
    assert "\033" not in output  # no spinner when the output is not a terminal
    assert "opened in your browser" not in output
    reported = float(re.search(r"demo passed in ([\d.]+) s", output).group(1))  # type: ignore[union-attr]
    assert reported < 30.0 and wall < 30.0, f"demo took {reported} s ({wall:.1f} s wall)"
    pids = [int(pid) for _, pid in PID_LINE.findall(output)]
    assert len(pids) == 3
    assert_gone(pids)


def test_ctrl_c_stops_every_node_process() -> None:
    process = start_demo("--no-browser", "--keep")
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "cluster formed" in line:
            break
    pids = [int(pid) for _, pid in PID_LINE.findall("".join(lines))]
    assert len(pids) == 3 and "cluster formed" in lines[-1], "".join(lines)
    process.send_signal(signal.SIGINT)  # the demo alone, as a terminal's Ctrl-C reaches it
    output = "".join(lines) + finish(process, timeout=30.0)
    assert process.returncode == 130, output
    assert "interrupted" in output
    assert_gone(pids)


def test_a_node_that_fails_to_start_fails_the_demo_with_its_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: demo.Demo, node_id: str) -> list[str]:
        return [sys.executable, "-c", "import sys; print('no such port'); sys.exit(3)"]

    monkeypatch.setattr(demo.Demo, "node_command", broken)
    out = io.StringIO()
    assert demo.run_demo(open_browser=False, out=out) == 1
    text = out.getvalue()
    assert "demo failed: node a exited with code 3" in text
    assert "no such port" in text


def test_no_browser_is_tried_without_a_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    tried: list[str] = []
    monkeypatch.setattr(demo.webbrowser, "open", lambda url: tried.append(url) or True)
    assert demo._open_browser("http://127.0.0.1:1/") == (False, demo.NO_DISPLAY)
    assert tried == []


def test_a_browser_that_cannot_start_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(demo.webbrowser, "open", lambda url: False)
    opened, note = demo._open_browser("http://127.0.0.1:1/")
    assert not opened and "open the dashboard URL yourself" in note
    monkeypatch.setattr(demo.webbrowser, "open", lambda url: True)
    assert demo._open_browser("http://127.0.0.1:1/") == (True, "opened in your browser")
