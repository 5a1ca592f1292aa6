"""The node's HTTP API (aiohttp): health, members, shared state as JSON, key administration.

State lives in last-writer-wins map replicas named "state/<name>"; a PUT is a local write of
this node and replicates like any other. Bad JSON, an unknown replica or key, or a value that
cannot be replicated gets a 4xx with a JSON error body, and nothing is written.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from crdts import LWWMap
from foundation_p2p.engine import MEMBERS
from foundation_p2p.runtime.dashboard import add_observability_routes
from foundation_p2p.runtime.metrics import health_details

if TYPE_CHECKING:
    from foundation_p2p.node import Node

log = logging.getLogger("foundation_p2p.http")
STATE_PREFIX = "state/"
MAX_BODY = 1024 * 1024


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _reply(data: Any, status: int = 200) -> web.Response:
    return web.json_response(
        data, status=status, dumps=lambda d: json.dumps(d, default=_json_default)
    )


def _error(status: int, message: str) -> web.Response:
    return _reply({"error": message}, status)


def build_app(node: Node) -> web.Application:
    """The aiohttp application for `node`."""
    app = web.Application(client_max_size=MAX_BODY)
    routes = web.RouteTableDef()

    @routes.get("/health")
    async def health(request: web.Request) -> web.Response:
        members = node.members()
        by_state: dict[str, int] = {}
        for status in members.values():
            by_state[status] = by_state.get(status, 0) + 1
        return _reply(
            {
                "status": "ok",
                "node": node.node_id,
                "cluster": node.cluster,
                "address": node.address,
                "members": by_state,
                "replicas": sorted(n for n in node._require_engine().replica_names if n != MEMBERS),
                **health_details(node),
            }
        )

    @routes.get("/members")
    async def members(request: web.Request) -> web.Response:
        engine = node._require_engine()
        table = {
            member_id: {
                "status": m.status,
                "incarnation": m.incarnation,
                "address": m.address,
                "metadata": dict(m.metadata),
            }
            for member_id, m in engine.membership.table.items()
        }
        return _reply({"node": node.node_id, "members": table})

    def state_map(name: str, create: bool) -> LWWMap | None:
        engine = node._require_engine()
        replica_name = STATE_PREFIX + name
        existing = engine.replication.replicas.get(replica_name)
        if existing is None and not create:
            return None
        if existing is not None and not isinstance(existing, LWWMap):
            raise web.HTTPBadRequest(
                text=json.dumps({"error": f"replica {replica_name!r} is not a map"}),
                content_type="application/json",
            )
        return node.replica(replica_name, LWWMap).crdt  # type: ignore[no-any-return]

    @routes.get("/state/{name}")
    async def get_state(request: web.Request) -> web.Response:
        replica = state_map(request.match_info["name"], create=False)
        if replica is None:
            return _error(404, f"no shared state named {request.match_info['name']!r}")
        return _reply(replica.value_at(int(time.time() * 1000)))

    @routes.get("/state/{name}/{key}")
    async def get_key(request: web.Request) -> web.Response:
        name, key = request.match_info["name"], request.match_info["key"]
        replica = state_map(name, create=False)
        if replica is None:
            return _error(404, f"no shared state named {name!r}")
        missing = object()
        value = replica.get(key, missing, now_ms=int(time.time() * 1000))
        if value is missing:
            return _error(404, f"no key {key!r} in {name!r}")
        return _reply({"key": key, "value": value})

    @routes.put("/state/{name}/{key}")
    async def put_key(request: web.Request) -> web.Response:
        name, key = request.match_info["name"], request.match_info["key"]
        try:
            value = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(400, f"body is not JSON: {exc}")
        handle = node.replica(STATE_PREFIX + name, LWWMap)
        try:
            handle.set(key, value)
        except (TypeError, ValueError) as exc:
            return _error(400, f"value cannot be replicated: {exc}")
        return _reply({"key": key, "value": value, "node": node.node_id})

    @routes.delete("/state/{name}/{key}")
    async def delete_key(request: web.Request) -> web.Response:
        name, key = request.match_info["name"], request.match_info["key"]
        replica = state_map(name, create=False)
        if replica is None or key not in replica:
            return _error(404, f"no key {key!r} in {name!r}")
        node.replica(STATE_PREFIX + name, LWWMap).delete(key)
        return _reply({"deleted": key, "node": node.node_id})

    @routes.get("/admin/keys")
    async def list_keys(request: web.Request) -> web.Response:
        denied = _authorize(node, request)
        if denied is not None:
            return denied
        keyring = node.keyring
        assert keyring is not None
        return _reply({"keys": keyring.key_ids(), "primary": keyring.primary_id()})

    @routes.post("/admin/keys")
    async def change_keys(request: web.Request) -> web.Response:
        denied = _authorize(node, request)
        if denied is not None:
            return denied
        keyring = node.keyring
        assert keyring is not None
        try:
            body = await request.json()
            operation, key = body["op"], body["key"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            return _error(400, f'expected {{"op": "install"|"use"|"remove", "key": ...}}: {exc}')
        if operation not in ("install", "use", "remove"):
            return _error(400, f"op must be install, use or remove, got {operation!r}")
        try:
            getattr(keyring, operation)(key)
        except (ValueError, KeyError) as exc:
            return _error(400, str(exc))
        log.warning("key %s: %s", operation, keyring.key_id(key))
        return _reply({"keys": keyring.key_ids(), "primary": keyring.primary_id()})

    @routes.get("/admin/backup")
    async def backup(request: web.Request) -> web.Response:
        denied = _authorize(node, request)
        if denied is not None:
            return denied
        data = node.backup_bytes()  # taken on the loop in one go: a consistent cut
        return web.Response(body=data, content_type="application/octet-stream")

    app.add_routes(routes)
    add_observability_routes(app, node)
    return app


def _authorize(node: Node, request: web.Request) -> web.Response | None:
    """Admin endpoints need a bearer token derived from any installed cluster key."""
    keyring = node.keyring
    if keyring is None:
        return _error(403, "this node has no cluster key; key administration is disabled")
    supplied = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not any(hmac.compare_digest(supplied, token) for token in keyring.tokens("admin")):
        log.warning("refused admin request from %s: bad token", request.remote)
        node._require_engine().counters["refused.admin_token"] += 1
        return _error(401, "missing or wrong admin token")
    return None


async def serve(node: Node, listen: str) -> tuple[web.AppRunner, str]:
    """Start the HTTP server on `listen` ("host:port"); return the runner and the bound address."""
    from transport.discovery import parse_address

    host, port = parse_address(listen) if not listen.endswith(":0") else (listen[:-2], 0)
    runner = web.AppRunner(build_app(node), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0] if runner.addresses else (host, port)
    return runner, f"{bound[0]}:{bound[1]}"
