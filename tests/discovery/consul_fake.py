"""An aiohttp fake of the Consul agent endpoints ConsulDiscovery uses, following Consul's
documented JSON (agent/service/register, agent/service/:id, agent/service/deregister/:id,
health/service/:name?passing, agent/self). It can fail with 500s and restart without state."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web


class FakeConsulAgent:
    """The agent's state: registered services, which checks pass, failures to inject."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, Any]] = {}
        self.critical: set[str] = set()
        self.fail_next = 0
        self.garbage = False  # health answers with JSON that is not Consul's
        self.requests: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add_peer(self, service_id: str, address: str, port: int, **meta: str) -> None:
        """A service registered by some other node (through its own agent)."""
        self.services[service_id] = {
            "ID": service_id,
            "Name": "foundation-p2p",
            "Address": address,
            "Port": port,
            "Tags": [],
            "Meta": {"proto": "1", **meta},
        }

    async def start(self) -> None:
        app = web.Application(middlewares=[self._failures])
        app.router.add_put("/v1/agent/service/register", self._register)
        app.router.add_put("/v1/agent/service/deregister/{id}", self._deregister)
        app.router.add_get("/v1/agent/service/{id}", self._service)
        app.router.add_get("/v1/health/service/{name}", self._health)
        app.router.add_get("/v1/agent/self", self._self)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self) -> None:
        """Stop, forget every registration (a dev agent with no data dir), start again."""
        await self.stop()
        self.services.clear()
        await self.start()

    @web.middleware
    async def _failures(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=500, text="rpc error making call: No cluster leader")
        response: web.StreamResponse = await handler(request)
        return response

    async def _register(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body.get("Name"), str) or "Check" not in body:
            return web.Response(status=400, text="Missing service name")
        self.services[body.get("ID") or body["Name"]] = body
        return web.Response(status=200)

    async def _deregister(self, request: web.Request) -> web.Response:
        service_id = request.match_info["id"]
        if service_id not in self.services:
            return web.Response(status=404, text=f'Unknown service ID "{service_id}"')
        del self.services[service_id]
        return web.Response(status=200)

    async def _service(self, request: web.Request) -> web.Response:
        service_id = request.match_info["id"]
        if service_id not in self.services:
            return web.Response(status=404, text=f"unknown service ID: {service_id}")
        service = self.services[service_id]
        return web.json_response({**service, "Service": service["Name"]})

    async def _health(self, request: web.Request) -> web.Response:
        if self.garbage:
            return web.json_response({"error": "not a list"})
        name = request.match_info["name"]
        passing = "passing" in request.query
        entries = []
        for service_id, service in self.services.items():
            if service["Name"] != name:
                continue
            status = "critical" if service_id in self.critical else "passing"
            if passing and status != "passing":
                continue
            entries.append(
                {
                    "Node": {"ID": "n1", "Node": "agent-1", "Address": "10.9.9.9"},
                    "Service": {
                        "ID": service_id,
                        "Service": service["Name"],
                        "Tags": service.get("Tags", []),
                        "Address": service.get("Address", ""),
                        "Meta": service.get("Meta", {}),
                        "Port": service["Port"],
                    },
                    "Checks": [{"CheckID": f"service:{service_id}", "Status": status}],
                }
            )
        return web.json_response(entries)

    async def _self(self, request: web.Request) -> web.Response:
        return web.json_response({"Config": {"Datacenter": "dc1", "NodeName": "agent-1"}})


@contextlib.asynccontextmanager
async def fake_consul() -> AsyncIterator[FakeConsulAgent]:
    """A FakeConsulAgent on 127.0.0.1 (an ephemeral port), stopped on exit."""
    agent = FakeConsulAgent()
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop()
