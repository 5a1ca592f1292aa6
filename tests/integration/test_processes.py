"""Real OS processes: `foundation-p2p node` on loopback, driven over HTTP like a user would."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(120)


_ports = random.Random(os.getpid())


def free_port() -> int:
    """A loopback port below the kernel's ephemeral range, so no outgoing connection takes it."""
    for _ in range(200):
        port = _ports.randrange(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port in 20000-32000")


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=3.0) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        time.sleep(0.1)


class Proc:
    """One `foundation-p2p node` process with its gossip and HTTP ports."""

    def __init__(self, name: str, gossip: int, web: int, seeds: list[int]) -> None:
        self.name, self.gossip, self.web, self.seeds = name, gossip, web, seeds
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "foundation_p2p",
            "node",
            "--cluster",
            "it",
            "--node-id",
            self.name,
            "--listen",
            f"127.0.0.1:{self.gossip}",
            "--http",
            f"127.0.0.1:{self.web}",
            "--profile",
            "development",
            "--seeds",
            ",".join(f"127.0.0.1:{p}" for p in self.seeds),
        ]
        # A file, not a pipe: a chatty node must never block on a full pipe nobody reads.
        self.log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, text=True
        )
        try:
            wait_for(self._healthy)
        except AssertionError:
            self.kill()
            raise AssertionError(f"{self.name} never became healthy:\n{self.output()}") from None

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.process.returncode}:\n{self.output()}")
        return http("GET", f"{self.url}/health")[0] == 200

    def output(self) -> str:
        """The last lines the process printed."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web}"

    def members(self) -> dict[str, str]:
        _, body = http("GET", f"{self.url}/members")
        return {node: m["status"] for node, m in body["members"].items()}

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)
            self.process.wait(timeout=10)


@pytest.fixture
def three() -> Iterator[list[Proc]]:
    ports = [(free_port(), free_port()) for _ in range(3)]
    procs = [
        Proc(f"p{i}", gossip, web, [ports[0][0]] if i else [])
        for i, (gossip, web) in enumerate(ports)
    ]
    try:
        for proc in procs:
            proc.start()
        yield procs
    finally:
        for proc in procs:
            proc.kill()


def test_a_put_on_one_node_is_readable_on_all(three):
    wait_for(lambda: all(len(p.members()) == 3 for p in three))
    status, _ = http("PUT", f"{three[0].url}/state/line-3/temperature", 21.5)
    assert status == 200
    for proc in three:
        wait_for(
            lambda proc=proc: (
                http("GET", f"{proc.url}/state/line-3/temperature")[1]
                == {"key": "temperature", "value": 21.5}
            )
        )
    assert http("GET", f"{three[2].url}/state/line-3")[1] == {"temperature": 21.5}


def test_bad_requests_write_nothing(three):
    status, body = http("GET", f"{three[0].url}/state/nothing-here")
    assert status == 404 and "error" in body
    request = urllib.request.Request(
        f"{three[0].url}/state/line-3/k", data=b"{not json", method="PUT"
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=3.0)
    assert info.value.code == 400
    assert http("GET", f"{three[0].url}/state/line-3/k")[0] == 404


def test_kill_9_is_detected_and_a_restart_catches_up(three):
    wait_for(lambda: all(len(p.members()) == 3 for p in three))
    three[2].kill(signal.SIGKILL)
    wait_for(lambda: all(p.members()["p2"] == "dead" for p in three[:2]), 30.0)
    http("PUT", f"{three[0].url}/state/line-3/mode", "auto")
    three[2].start()
    wait_for(lambda: three[0].members()["p2"] == "alive", 30.0)
    wait_for(
        lambda: (
            http("GET", f"{three[2].url}/state/line-3/mode")[1] == {"key": "mode", "value": "auto"}
        ),
        30.0,
    )


def test_sigterm_leaves_gracefully(three):
    wait_for(lambda: all(len(p.members()) == 3 for p in three))
    three[1].kill(signal.SIGTERM)
    assert three[1].process is not None and three[1].process.returncode == 0
    wait_for(lambda: three[0].members()["p1"] == "left")
