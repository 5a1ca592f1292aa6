"""Static discovery: a fixed seed list, offered again every interval."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from transport.discovery.base import Announcement, Candidate, Found, parse_address


class StaticDiscovery:
    """Offers every seed address at start and then every `interval` seconds.

    Re-offering is what lets a node find a seed that was down at start or came back after a
    partition; the node skips candidates it is already connected to.
    """

    name = "static"

    def __init__(self, seeds: Iterable[str], interval: float = 5.0) -> None:
        self.seeds = [seed.strip() for seed in seeds if seed.strip()]
        for seed in self.seeds:
            parse_address(seed)
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self.interval = interval

    async def run(self, me: Announcement, found: Found) -> None:
        """Offer the seeds (except our own address) until cancelled."""
        while True:
            for seed in self.seeds:
                if seed != me.address:
                    found(Candidate(seed))
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        """Nothing to release."""
