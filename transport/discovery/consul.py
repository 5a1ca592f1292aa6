"""Consul discovery: register in the local agent with a TCP check, poll the passing instances."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from typing import Any

import aiohttp

from transport.discovery.base import Announcement, Candidate, Found, parse_address

log = logging.getLogger(__name__)

DEFAULT_AGENT = "127.0.0.1:8500"
SERVICE_NAME = "foundation-p2p"


class ConsulError(Exception):
    """The agent could not be reached or answered with an error status."""


def agent_address(address: str | None = None) -> str:
    """`address`, else CONSUL_HTTP_ADDR (scheme and all), else the local agent."""
    chosen = address or os.environ.get("CONSUL_HTTP_ADDR") or DEFAULT_AGENT
    return chosen if "://" in chosen else f"http://{chosen}"


class ConsulDiscovery:
    """Registers this node as an instance of `service` in the local Consul agent, with a TCP
    health check on its gossip address, and offers the passing instances of our cluster.

    The agent is polled every `interval` seconds. A 5xx or an unreachable agent is logged and
    counted and the last answer is offered again; an agent that restarted without its state
    (our registration gone: 404 on /v1/agent/service/<id>) gets us registered again. On close
    the registration is removed.
    """

    name = "consul"

    def __init__(
        self,
        address: str | None = None,
        service: str = SERVICE_NAME,
        interval: float = 5.0,
        timeout: float = 5.0,
        token: str | None = None,
        check_interval: str = "10s",
        deregister_after: str = "1m",
    ) -> None:
        if interval <= 0 or timeout <= 0:
            raise ValueError("interval and timeout must be > 0")
        self.base_url = agent_address(address).rstrip("/")
        self.service = service
        self.interval = interval
        self.timeout = timeout
        self.token = token if token is not None else os.environ.get("CONSUL_HTTP_TOKEN")
        self.check_interval = check_interval
        self.deregister_after = deregister_after
        self.counters: collections.Counter[str] = collections.Counter()
        self.last: list[Candidate] = []
        self.service_id: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._registered = False
        self._failing = False
        self._closed = asyncio.Event()

    async def run(self, me: Announcement, found: Found) -> None:
        """Register, then poll and offer until cancelled or closed."""
        parse_address(me.address)
        self.service_id = f"{self.service}-{me.node_id}"
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"X-Consul-Token": self.token} if self.token else None,
        )
        try:
            while not self._closed.is_set():
                await self.poll(me)
                for candidate in self.last:
                    try:
                        found(candidate)
                    except Exception:
                        log.exception("consul discovery: the found callback failed")
                try:
                    await asyncio.wait_for(self._closed.wait(), self.interval)
                except TimeoutError:
                    pass
        finally:
            await asyncio.shield(self._release())

    async def poll(self, me: Announcement) -> None:
        """One round: make sure we are registered, then fetch the passing instances."""
        try:
            if self._registered and not await self._still_registered():
                self.counters["reregistered"] += 1
                log.warning("consul discovery: the agent lost our registration; registering again")
                self._registered = False
            if not self._registered:
                await self._register(me)
                self._registered = True
            entries = await self._request("GET", f"/v1/health/service/{self.service}?passing")
        except ConsulError as exc:
            self.counters["errors"] += 1
            # One warning per outage, not one per poll: repeats go to debug.
            level = logging.DEBUG if self._failing else logging.WARNING
            self._failing = True
            log.log(level, "consul discovery: %s (polling every %gs)", exc, self.interval)
            return
        if self._failing:
            log.info("consul discovery: the agent at %s answers again", self.base_url)
            self._failing = False
        self.counters["polls"] += 1
        self.last = self._candidates(entries, me)

    async def close(self) -> None:
        """Deregister and stop polling; idempotent."""
        self._closed.set()
        await self._release()

    async def _release(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        try:
            if self._registered and self.service_id is not None:
                self._registered = False
                try:
                    await self._request(
                        "PUT", f"/v1/agent/service/deregister/{self.service_id}", session=session
                    )
                except ConsulError as exc:
                    log.warning("consul discovery: could not deregister: %s", exc)
        finally:
            await session.close()

    async def _register(self, me: Announcement) -> None:
        host, port = parse_address(me.address)
        body = {
            "ID": self.service_id,
            "Name": self.service,
            "Address": host,
            "Port": port,
            "Tags": [f"cluster={me.cluster}"],
            "Meta": {
                "cluster": me.cluster,
                "node_id": me.node_id,
                "proto": str(me.protocol_version),
            },
            "Check": {
                "Name": f"{self.service} gossip port",
                "TCP": me.address,
                "Interval": self.check_interval,
                "Timeout": "2s",
                "DeregisterCriticalServiceAfter": self.deregister_after,
            },
        }
        await self._request("PUT", "/v1/agent/service/register", json=body)
        self.counters["registered"] += 1
        log.info("consul discovery: registered %s at %s", self.service_id, me.address)

    async def _still_registered(self) -> bool:
        try:
            await self._request("GET", f"/v1/agent/service/{self.service_id}")
        except _NotFound:
            return False
        return True

    def _candidates(self, entries: Any, me: Announcement) -> list[Candidate]:
        """Peers of our cluster and protocol from /v1/health/service JSON; bad entries counted."""
        if not isinstance(entries, list):
            self.counters["malformed"] += 1
            log.warning("consul discovery: expected a JSON list, got %s", type(entries).__name__)
            return self.last
        candidates: list[Candidate] = []
        for entry in entries:
            try:
                service = entry["Service"]
                meta = service.get("Meta") or {}
                host = service.get("Address") or entry["Node"]["Address"]
                port = int(service["Port"])
                address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                parse_address(address)
            except (KeyError, TypeError, ValueError, AttributeError):
                self.counters["malformed"] += 1
                continue
            if meta.get("cluster") != me.cluster:
                self.counters["other_cluster"] += 1
                continue
            if meta.get("proto") != str(me.protocol_version):
                self.counters["other_protocol"] += 1
                continue
            node_id = meta.get("node_id") or None
            if node_id == me.node_id or address == me.address:
                continue
            candidates.append(Candidate(address, node_id if isinstance(node_id, str) else None))
        return candidates

    async def _request(
        self,
        method: str,
        path: str,
        json: Any = None,
        session: aiohttp.ClientSession | None = None,
    ) -> Any:
        session = session or self._session
        if session is None:
            raise ConsulError("not running")
        url = self.base_url + path
        try:
            async with session.request(method, url, json=json) as response:
                if response.status == 404:
                    raise _NotFound(f"{method} {path}: 404")
                if response.status >= 400:
                    text = (await response.text())[:200]
                    raise ConsulError(f"{method} {path}: HTTP {response.status} {text}")
                if response.content_type == "application/json":
                    return await response.json()
                return await response.text()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ConsulError(f"{method} {url}: {type(exc).__name__}: {exc}") from None


class _NotFound(ConsulError):
    """The agent answered 404."""
