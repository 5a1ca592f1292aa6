"""Yjs clients against loopback nodes: the npm packages of a real Yjs client, a 2-node cluster
with HTTP, and a driver for the Node.js client script (real sockets, bounded, stopped by pid)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from yjs_support import JsClient, eventually_true

from foundation_p2p import Config
from foundation_p2p.node import Node

NPM_PACKAGES = ("yjs", "y-websocket", "ws")
NPM_DIR = Path(os.environ.get("FP2P_NPM_DIR") or Path.home() / ".cache" / "foundation-p2p-npm")
CLIENT_SCRIPT = Path(__file__).with_name("yjs_client.cjs")
MakeNodes = Callable[..., Awaitable[list[Node]]]


def installed() -> bool:
    return all((NPM_DIR / "node_modules" / name / "package.json").exists() for name in NPM_PACKAGES)


@pytest.fixture(scope="session")
def npm_dir() -> Path:
    """A folder whose node_modules holds yjs, y-websocket and ws (installed once, cached)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed (apt-get install nodejs npm)")
    if not installed():
        NPM_DIR.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                ["npm", "install", "--prefix", str(NPM_DIR), "--no-audit", "--no-fund",
                 *NPM_PACKAGES],
                capture_output=True, text=True, timeout=240, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            pytest.skip("npm install of yjs y-websocket ws took over 240 s")
        if done.returncode != 0 or not installed():
            pytest.skip(f"npm install of yjs y-websocket ws failed: {done.stderr[-500:]}")
    return NPM_DIR


@pytest.fixture
async def make_nodes() -> AsyncIterator[MakeNodes]:
    """`await make_nodes(2, key=...)`: n0..n(k-1) on loopback with HTTP, all alive; stopped at
    teardown."""
    started: list[Node] = []

    async def make(count: int = 2, key: bytes | None = None) -> list[Node]:
        config = Config.development(
            probe_interval=0.1, probe_timeout=0.05, anti_entropy_interval=0.2
        )
        nodes: list[Node] = []
        for i in range(count):
            node = Node(
                cluster="yjs",
                node_id=f"n{i}",
                config=config,
                seeds=[nodes[0].address] if nodes else [],
                http="127.0.0.1:0",
                discovery=None,
                key=key,
            )
            await node.start()
            started.append(node)
            nodes.append(node)
        await eventually_true(lambda: all(len(n.members()) == count for n in nodes))
        await eventually_true(lambda: all(set(n.members().values()) == {"alive"} for n in nodes))
        return nodes

    yield make
    for node in started:
        await node.stop(leave=False)


@pytest.fixture
async def js_client(npm_dir: Path) -> AsyncIterator[Callable[..., Awaitable[JsClient]]]:
    """`await js_client(url, state, token)`: a started client process, stopped by pid after."""
    processes: list[asyncio.subprocess.Process] = []

    async def start(url: str, state: str, token: str = "") -> JsClient:
        process = await asyncio.create_subprocess_exec(
            "node", str(CLIENT_SCRIPT), url, state, token,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "NODE_PATH": str(npm_dir / "node_modules")},
        )  # fmt: skip
        processes.append(process)
        return JsClient(process)

    yield start
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()
