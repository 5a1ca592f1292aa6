"""Helpers of the Yjs client tests: a bounded poll and the Node.js client driver."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from tests.realnodes import eventually as eventually_true

__all__ = ["JsClient", "eventually_true"]


class JsClient:
    """The Node.js y-websocket client (tests/yjs/yjs_client.cjs) as a child process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []

    async def send(self, op: str, **fields: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
        await self.process.stdin.drain()

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0
    ) -> dict[str, Any]:
        """The first event so far or to come that satisfies `predicate` (bounded)."""
        for event in self.events:
            if predicate(event):
                return event
        assert self.process.stdout is not None
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(
                    f"no matching event from the JS client; last: {self.events[-3:]}"
                )
            line = await asyncio.wait_for(self.process.stdout.readline(), left)
            if not line:
                raise AssertionError(f"the JS client exited; last events: {self.events[-3:]}")
            event = json.loads(line)
            self.events.append(event)
            if predicate(event):
                return event

    async def state_where(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0
    ) -> dict[str, Any]:
        """The JS client's view of the map once `predicate(view)` holds."""
        found = await self.wait_for(
            lambda e: e["event"] in ("state", "synced") and predicate(e["data"]), timeout
        )
        return dict(found["data"])
