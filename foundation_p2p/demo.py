"""`foundation-p2p demo`: three real nodes on loopback, writes through a partition, a heal.

Each node is its own `foundation-p2p node` process (mDNS pinned to 127.0.0.1, frames sealed
with a fresh cluster key, HTTP API on loopback). The demo writes to the SharedState `line-3`
over HTTP, cuts node c off with the node's own fault injection (`--demo-faults`: c drops every
frame to and from its peers, as a firewall dropping packets would), shows both sides still
accepting writes, heals, and checks that every node ends with every write. Every process it
starts is stopped by pid, on success, failure or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import webbrowser
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from transport import derive_token, generate_key, key_to_text

NODE_IDS = ("a", "b", "c")
CUT_NODE = "c"
STATE = "line-3"
SAFETY_CUT_SECONDS = 30.0  # the cut heals by itself even if the demo dies before healing it
STOP_GRACE = 3.0
BROWSER_HOLD = 3.0
NO_DISPLAY = "no display: open the dashboard URL yourself"
BANNER_LINE = re.compile(r"^node (\S+) cluster=\S+ listen=(\S+) http=(\S+)$", re.MULTILINE)


class DemoFailed(Exception):
    """A step did not happen in time; the message says which and what was seen."""


@dataclass
class NodeProcess:
    """One `foundation-p2p node` process started by the demo."""

    node_id: str
    process: subprocess.Popen[bytes]
    log_path: Path
    gossip: str = ""
    http: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.http}"

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the process printed, indented."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "    (no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


@dataclass
class Narrator:
    """Milestone lines with the elapsed time; a spinner while waiting (on a terminal only)."""

    out: TextIO
    tty: bool
    started: float = field(default_factory=time.monotonic)
    _spin: Iterator[str] = field(default_factory=lambda: itertools.cycle("|/-\\"))

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, mark: str, message: str) -> None:
        self._clear()
        print(f"[{self.elapsed:5.1f} s] {mark} {message}", file=self.out, flush=True)

    def detail(self, message: str) -> None:
        self._clear()
        print(f"{'':10} {message}", file=self.out, flush=True)

    def waiting(self, what: str) -> None:
        if self.tty:
            print(f"\r{next(self._spin)} {what} ({self.elapsed:4.1f} s)", end="", file=self.out)
            self.out.flush()

    def _clear(self) -> None:
        if self.tty:
            print("\r\033[K", end="", file=self.out)


class Demo:
    """The three processes, their HTTP APIs, and the narrated steps."""

    def __init__(self, narrator: Narrator, workdir: Path) -> None:
        self.narrator = narrator
        self.workdir = workdir
        self.cluster = f"demo-{uuid.uuid4().hex[:6]}"  # never joins another run's nodes
        key = generate_key()
        self.key_file = workdir / "cluster.key"
        self.key_file.write_text(key_to_text(key) + "\n")
        self.key_file.chmod(0o600)
        self.token = derive_token(key, "admin")
        self.nodes: dict[str, NodeProcess] = {}

    # --- processes ---------------------------------------------------------------------------

    def start_nodes(self) -> None:
        """Start every node process; return once each printed its addresses."""
        for node_id in NODE_IDS:
            log_path = self.workdir / f"{node_id}.log"
            command = self.node_command(node_id)
            with log_path.open("wb") as log:  # a file, not a pipe: a chatty node never blocks
                process = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            self.nodes[node_id] = NodeProcess(node_id, process, log_path)
        self.wait("nodes starting", self._all_listening, 15.0)

    def node_command(self, node_id: str) -> list[str]:
        """The command line of node `node_id`."""
        return [
            sys.executable,
            "-m",
            "foundation_p2p",
            "node",
            "--cluster",
            self.cluster,
            "--node-id",
            node_id,
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--discovery",
            "mdns",
            "--mdns-interface",
            "127.0.0.1",  # pinned: the demo never multicasts beyond loopback
            "--profile",
            "development",
            "--key-file",
            str(self.key_file),
            "--demo-faults",
        ]

    def stop_nodes(self) -> None:
        """SIGTERM every process by pid (they leave gracefully), SIGKILL any still running."""
        running = [n.process for n in self.nodes.values() if n.process.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _all_listening(self) -> bool:
        for node in self.nodes.values():
            self._check_running(node)
            if not node.http:
                match = BANNER_LINE.search(node.log_path.read_text(errors="replace"))
                if match is None:
                    return False
                node.gossip, node.http = match.group(2), match.group(3)
        return True

    def _check_running(self, node: NodeProcess) -> None:
        code = node.process.poll()
        if code is not None:
            raise DemoFailed(f"node {node.node_id} exited with code {code}:\n{node.log_tail()}")

    # --- HTTP --------------------------------------------------------------------------------

    def request(self, node_id: str, method: str, path: str, body: Any = None) -> Any:
        """JSON from node `node_id`'s HTTP API; DemoFailed on an error status."""
        node = self.nodes[node_id]
        self._check_running(node)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            node.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=3.0) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise DemoFailed(f"{method} {path} on {node_id}: HTTP {exc.code} {detail}") from None
        except OSError as exc:
            raise DemoFailed(f"{method} {path} on {node_id}: {exc}") from None

    def members(self, node_id: str) -> dict[str, str]:
        """Node `node_id`'s view: member -> status."""
        table = self.request(node_id, "GET", "/members")["members"]
        return {member: entry["status"] for member, entry in table.items()}

    def state(self, node_id: str) -> dict[str, Any]:
        """Node `node_id`'s copy of the SharedState (empty if it holds none yet)."""
        try:
            result: dict[str, Any] = self.request(node_id, "GET", f"/state/{STATE}")
        except DemoFailed as exc:
            if "HTTP 404" in str(exc):
                return {}
            raise
        return result

    def write(self, node_id: str, key: str, value: Any) -> None:
        """PUT one key on one node (a local write there)."""
        self.request(node_id, "PUT", f"/state/{STATE}/{key}", value)

    def wait(self, what: str, condition: Callable[[], bool], timeout: float) -> float:
        """Poll `condition` (bounded) until it holds; the seconds it took. DemoFailed if not."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            try:
                if condition():
                    return time.monotonic() - start
            except DemoFailed as exc:
                if "exited with code" in str(exc):
                    raise
            if time.monotonic() > deadline:
                raise DemoFailed(f"{what}: not reached within {timeout:g} s")
            self.narrator.waiting(what)
            time.sleep(0.1)

    # --- the story ---------------------------------------------------------------------------

    def run(self, open_browser: bool) -> None:
        """Every step of the demo; DemoFailed at the first that does not happen."""
        say, detail = self.narrator.say, self.narrator.detail
        say(
            ">",
            f"starting nodes {', '.join(NODE_IDS)} as separate processes (cluster "
            f"{self.cluster!r}, mDNS on 127.0.0.1, frames sealed with AES-256-GCM)",
        )
        self.start_nodes()
        for node in self.nodes.values():
            detail(f"{node.node_id}: pid {node.process.pid}, gossip {node.gossip}, http {node.url}")

        took = self.wait("nodes finding each other by mDNS", self._formed, 15.0)
        say("+", f"cluster formed: every node sees {', '.join(NODE_IDS)} alive ({took:.1f} s)")
        dashboard = f"{self.nodes[NODE_IDS[0]].url}/"
        detail(f"dashboard: {dashboard}")
        shown = False  # hold the partition a moment when someone is watching the dashboard
        if open_browser:
            shown, how = _open_browser(dashboard)
            detail(how)

        expected: dict[str, Any] = {}
        for index, node_id in enumerate(NODE_IDS):
            key, value = f"temperature-{node_id}", 21.0 + index
            self.write(node_id, key, value)
            expected[key] = value
        say("+", f"wrote one reading on each node: PUT /state/{STATE}/temperature-<node>")
        took = self.wait("replicating", lambda: self._all_hold(expected), 10.0)
        say("+", f"every node holds all {len(expected)} readings ({took * 1000:.0f} ms)")

        others = [n for n in NODE_IDS if n != CUT_NODE]
        self.request(CUT_NODE, "POST", "/admin/partition", {"seconds": SAFETY_CUT_SECONDS})
        say(">", f"cutting {CUT_NODE} off: it now drops every frame to and from its peers")
        took = self.wait("failure detection on both sides", lambda: self._split(others), 15.0)
        views = ", ".join(f"{n} sees {CUT_NODE} {self.members(n)[CUT_NODE]}" for n in others)
        say("+", f"partition seen on both sides: {views} ({took:.1f} s)")
        if shown:
            detail(f"holding the partition {BROWSER_HOLD:g} s so the dashboard shows it")
            time.sleep(BROWSER_HOLD)

        majority_key, minority_key = f"count-{others[0]}", f"count-{CUT_NODE}"
        self.write(others[0], majority_key, 1)
        self.write(others[1], f"count-{others[1]}", 2)
        self.write(CUT_NODE, minority_key, 3)
        self.write(others[0], "setpoint", 20)
        self.write(CUT_NODE, "setpoint", 25)
        expected.update({majority_key: 1, f"count-{others[1]}": 2, minority_key: 3})
        say(
            "+",
            f"both sides accepted writes: {', '.join(others)} wrote count-{others[0]}, "
            f"count-{others[1]}, setpoint=20; {CUT_NODE} wrote {minority_key}, setpoint=25",
        )
        cut_view, majority_view = self.state(CUT_NODE), self.state(others[0])
        if majority_key in cut_view or minority_key in majority_view:
            raise DemoFailed(f"the partition leaked: {CUT_NODE} holds {sorted(cut_view)}")
        detail(
            f"{others[0]} holds {len(majority_view)} keys, {CUT_NODE} holds {len(cut_view)}: "
            "the sides differ"
        )

        healed_at = time.monotonic()
        self.request(CUT_NODE, "DELETE", "/admin/partition")
        say(">", f"healing: {CUT_NODE} passes frames again")
        self.wait("convergence", lambda: self._converged(expected), 20.0)
        final = self.state(NODE_IDS[0])
        say(
            "+",
            f"converged {time.monotonic() - healed_at:.1f} s after the heal: all "
            f"{len(NODE_IDS)} nodes alive and holding the same {len(final)} keys, every write "
            "present",
        )
        detail(
            f"setpoint: both sides wrote it; every node now reads {final['setpoint']} "
            "(last writer wins)"
        )
        detail(json.dumps(final, sort_keys=True))

    def _formed(self) -> bool:
        return all(self.members(n) == dict.fromkeys(NODE_IDS, "alive") for n in NODE_IDS)

    def _all_hold(self, expected: dict[str, Any]) -> bool:
        return all(all(self.state(n).get(k) == v for k, v in expected.items()) for n in NODE_IDS)

    def _split(self, others: list[str]) -> bool:
        cut_view = self.members(CUT_NODE)
        return all(self.members(n).get(CUT_NODE) in ("suspect", "dead") for n in others) and all(
            cut_view.get(n) in ("suspect", "dead") for n in others
        )

    def _converged(self, expected: dict[str, Any]) -> bool:
        if not self._formed():
            return False
        states = [self.state(n) for n in NODE_IDS]
        return (
            all(s == states[0] for s in states)
            and all(states[0].get(k) == v for k, v in expected.items())
            and states[0].get("setpoint") in (20, 25)
        )


def _open_browser(url: str) -> tuple[bool, str]:
    """Open `url` in a graphical browser if there is a display; whether it did, and a note."""
    headless = sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    if headless:  # without a display webbrowser would take over this terminal with a text browser
        return False, NO_DISPLAY
    try:
        opened = webbrowser.open(url)
    except webbrowser.Error as exc:
        return False, f"could not open a browser ({exc}): open the dashboard URL yourself"
    if not opened:
        return False, "no browser found: open the dashboard URL yourself"
    return True, "opened in your browser"


def run_demo(open_browser: bool = True, keep: bool = False, out: TextIO | None = None) -> int:
    """Run the demo; 0 if every step happened, 1 (with the reason printed) if not."""
    out = out or sys.stdout
    narrator = Narrator(out, tty=out.isatty())
    workdir = Path(tempfile.mkdtemp(prefix="foundation-p2p-demo-"))
    demo = Demo(narrator, workdir)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        demo.run(open_browser)
        narrator.say("+", f"demo passed in {narrator.elapsed:.1f} s")
        if keep:
            narrator.detail("the cluster stays up; press Ctrl-C to stop it")
            with contextlib.suppress(KeyboardInterrupt):
                while all(n.process.poll() is None for n in demo.nodes.values()):
                    time.sleep(0.5)
        return 0
    except DemoFailed as exc:
        narrator.say("x", f"demo failed: {exc}")
        for node in demo.nodes.values():
            print(f"--- last lines of node {node.node_id} ---\n{node.log_tail()}", file=out)
        return 1
    except KeyboardInterrupt:
        narrator.say("x", "interrupted")
        return 130
    finally:
        demo.stop_nodes()
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(workdir, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
