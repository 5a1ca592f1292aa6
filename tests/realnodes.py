"""Helpers for tests that run real asyncio Nodes on loopback in one process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from foundation_p2p import Config


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `check` on the loop until it holds (bounded); fail with the timeout otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        await asyncio.sleep(0.02)


def fast(**overrides: Any) -> Config:
    """Development timings, sped up so failures show within about a second."""
    base = {"probe_interval": 0.1, "probe_timeout": 0.05, "anti_entropy_interval": 0.2}
    return Config.development(**{**base, **overrides})
